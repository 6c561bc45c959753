"""The broadcast buffer under every live stream: items with increasing ids,
published once and read by any number of followers.

A follower is an id (the last one it has seen), not a queue: publishing costs
the same whatever the audience, and a follower catches up by asking for
everything :meth:`Broadcast.after` its id. Publishing wakes every waiting
follower through one :class:`trio.Event`, replaced at each wake. A bounded
buffer forgets its oldest items; :attr:`Broadcast.floor` says up to which id
items are not held, so a follower that falls behind knows to look elsewhere
(the board, say) for what it missed.

:class:`~crewboard.web.loghub.LogHub` holds a session log's records in one
(by ``seq``), :class:`~crewboard.web.board_feed.BoardFeed` the board's events
(by event id).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import trio

T = TypeVar("T")


class Broadcast(Generic[T]):
    """Items in id order, shared by every follower.

    >>> buffer.publish([(7, item)])
    >>> await buffer.wait_after(6)  # returns at once: item 7 is held
    >>> buffer.after(6)
    [item]

    With ``keep``, the buffer holds at least the newest ``keep`` items: it
    drops the older ones once it holds twice as many, and raises
    :attr:`floor` to the newest dropped id.
    """

    def __init__(self, *, floor: int = 0, keep: int | None = None) -> None:
        self.floor = floor  # items with ids up to this one are not held
        self.keep = keep
        self.closed = False  # nothing more will be published
        self._ids: list[int] = []
        self._items: list[T] = []
        # Per derivation, the derived value of each held item from the oldest on.
        self._derived: dict[Callable[[T], Any], list[Any]] = {}
        self._changed = trio.Event()

    @property
    def last_id(self) -> int:
        """The newest id held, or :attr:`floor` while none is."""
        return self._ids[-1] if self._ids else self.floor

    def publish(self, items: Iterable[tuple[int, T]]) -> None:
        """Append ``(id, item)`` pairs and wake every follower. An id not
        above the newest one is a repeat of something published already, and
        is skipped."""
        for item_id, item in items:
            if item_id <= self.last_id:
                continue
            self._ids.append(item_id)
            self._items.append(item)
        if self.keep is not None and len(self._items) > 2 * self.keep:
            drop = len(self._items) - self.keep
            self.floor = self._ids[drop - 1]
            del self._ids[:drop], self._items[:drop]
            for derived in self._derived.values():
                del derived[:drop]
        self._wake()

    def close(self) -> None:
        """No more items will come: followers that have read everything end."""
        self.closed = True
        self._wake()

    def after(self, after_id: int, derive: Callable[[T], Any] | None = None) -> list[Any]:
        """The held items with ids above ``after_id``, oldest first; with
        ``derive``, what it makes of each, computed once per item however
        many followers ask."""
        start = bisect_right(self._ids, after_id)
        if derive is None:
            return self._items[start:]
        derived = self._derived.setdefault(derive, [])
        if len(derived) < len(self._items):
            derived.extend(derive(item) for item in self._items[len(derived) :])
        return derived[start:]

    async def wait_after(self, after_id: int) -> None:
        """Return once an item with an id above ``after_id`` is held (or
        dropped already: see :attr:`floor`), or the buffer is closed."""
        while self.last_id <= after_id and not self.closed:
            await self._changed.wait()

    def _wake(self) -> None:
        woken, self._changed = self._changed, trio.Event()
        woken.set()
