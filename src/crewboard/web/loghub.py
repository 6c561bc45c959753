"""The log hub: session logs followed live by any number of streams, with ONE
reader task per log file however many clients follow it.

The reader reads a :class:`~crewboard.sessionlog.LogCursor` whenever the
file changes (woken by the process's :class:`~crewboard.fswatch.FileWatch`;
every ``poll_s`` where changes cannot be seen) while the file has followers,
and publishes what it reads, by ``seq``, to a
:class:`~crewboard.web.broadcast.Broadcast` shared by all of them. A
follower is a position in that buffer, not a queue, so a record costs one
read, one parse and (per frame encoder) one encoding, whatever the audience.
The web process runs one hub (:func:`serve_log_hub`) from startup to shutdown.

On PostgreSQL the reader reads the board's copy of a run's or chat's log
instead (:mod:`crewboard.board.records`, shipped there by whichever host ran
it), woken by ``LISTEN`` on :data:`crewboard.board.notify.RECORDS` (every
:data:`BOARD_POLL_S` too, in case a notification was lost), so any web
node streams any run with the same records, seqs and ends as the host that
ran it. :meth:`LogHub.read_records` and :meth:`LogHub.last_record` read a
log whole, or its end, from the same place. On SQLite (one host) every
log is its file.

Records come with their effective seq (see :mod:`crewboard.sessionlog`): a
damaged log's malformed lines are skipped and its out-of-order seqs
renumbered, so every follower still reaches the terminal record; each reader
logs the damage it met once, when it stops.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from crewboard import sessionlog
from crewboard.board import db, notify, records
from crewboard.fswatch import FileWatch, wait_changed
from crewboard.sessionlog import LogCursor, Record, is_terminal
from crewboard.web.broadcast import Broadcast

log = logging.getLogger(__name__)

POLL_S = 0.025
# With changes watched, a file is still looked at this often, in case a
# change went unseen.
WATCHED_POLL_S = 1.0
# A log written in a burst is read at most this often, so a runner writing
# thousands of small records costs reads of many records each.
MIN_READ_GAP_S = 0.001
# Growth beyond this is read on a worker thread rather than on the event loop.
INLINE_READ_BYTES = 256 * 1024
# With the board's records followed through LISTEN, a followed log is still
# read this often, in case a notification was lost.
BOARD_POLL_S = 1.0


def _seq(record: Record) -> int:
    # Always an int: the cursor hands on effective seqs, never stored ones.
    seq: int = record["seq"]
    return seq


@dataclass(eq=False)
class _Tail:
    """One log file being read, and what has been read of it so far."""

    path: Path
    cursor: LogCursor
    records: Broadcast[Record] = field(default_factory=Broadcast)
    followers: int = 0
    # The log's key where its records are read from the board, else None.
    key: str | None = None
    # Set when the board says the log gained records.
    stored: trio.Event = field(default_factory=trio.Event)


class Following:
    """One follower of a log: an async iterator (not a generator, so leaving
    it early needs no ``aclose`` — though it has one — and never leaves a
    half-run generator behind). It joins the file's tail on its first step."""

    def __init__(
        self,
        hub: LogHub,
        path: Path,
        after_seq: int,
        *,
        encode: Callable[[Record], Any] | None = None,
        idle_s: float | None = None,
        until_terminal: bool = True,
    ) -> None:
        self._hub = hub
        self._path = path
        self._after_seq = after_seq
        self._encode = encode
        self.idle_s = idle_s  # may be changed while following
        self._until_terminal = until_terminal
        self._tail: _Tail | None = None
        self._done = False

    def __aiter__(self) -> Following:
        return self

    async def __anext__(self) -> list[Any] | None:
        # Flat down to the buffer's wait: thousands of followers idle at once
        # between records, and the cyclic GC walks what they hold.
        if self._done:
            raise StopAsyncIteration
        if self._tail is None:
            self._tail = self._hub._join(self._path)
        records = self._tail.records
        while True:
            new = records.after(self._after_seq)
            if new:
                count = len(new)
                if self._until_terminal:
                    ends = next((i for i, record in enumerate(new) if is_terminal(record)), None)
                    if ends is not None:
                        count = ends + 1
                        self._leave()
                batch = (
                    new if self._encode is None else records.after(self._after_seq, self._encode)
                )
                self._after_seq = _seq(new[count - 1])
                return batch[:count]
            if records.closed:
                self._leave()
                raise StopAsyncIteration
            if self.idle_s is None:
                await records.wait_after(self._after_seq)
            else:
                with trio.move_on_after(self.idle_s) as idle:
                    await records.wait_after(self._after_seq)
                if idle.cancelled_caught:
                    return None

    def _leave(self) -> None:
        if not self._done:
            self._done = True
            if self._tail is not None:
                self._tail.followers -= 1

    async def aclose(self) -> None:
        self._leave()

    def __del__(self) -> None:
        self._leave()


class FollowingRecords:
    """:class:`Following` one record at a time."""

    def __init__(self, batches: Following) -> None:
        self._batches = batches
        self._pending: list[Record] = []

    def __aiter__(self) -> FollowingRecords:
        return self

    async def __anext__(self) -> Record:
        while not self._pending:
            self._pending = list(await self._batches.__anext__() or [])
        return self._pending.pop(0)

    async def aclose(self) -> None:
        await self._batches.aclose()


class LogHub:
    """Follows session logs for any number of streams, one reader per file.

    >>> async for record in hub.follow(path, after_seq=12):
    ...     ...  # every record with seq > 12, ending after a terminal one

    Readers run in ``nursery``, from a file's first follower until its last
    one leaves.
    """

    def __init__(
        self, nursery: trio.Nursery, poll_s: float = POLL_S, watch: FileWatch | None = None
    ) -> None:
        self._nursery = nursery
        self.poll_s = poll_s
        self.watched_poll_s = WATCHED_POLL_S
        self._watch = watch or FileWatch()
        self._tails: dict[Path, _Tail] = {}
        # Whether logs are read from the board (PostgreSQL), and their tails
        # there by key.
        self.from_board = records.enabled()
        self._board_tails: dict[str, _Tail] = {}

    @property
    def files(self) -> int:
        """How many files have a reader right now."""
        return len(self._tails)

    def follow(self, path: str | os.PathLike[str], after_seq: int = 0) -> FollowingRecords:
        """Every record of the log after ``after_seq``, live, up to and
        including the first terminal record (then the iteration ends)."""
        return FollowingRecords(Following(self, Path(path), after_seq))

    def follow_batches(
        self,
        path: str | os.PathLike[str],
        after_seq: int = 0,
        *,
        encode: Callable[[Record], Any] | None = None,
        idle_s: float | None = None,
        until_terminal: bool = True,
    ) -> Following:
        """Like :meth:`follow`, in batches of whatever arrived together, each
        record passed through ``encode`` (memoised per record and encoder:
        every follower shares the work). With ``idle_s``, yields None after
        that long without records, so the caller can ping or look around;
        without ``until_terminal`` it keeps following past terminal records
        (a chat log's next turn)."""
        return Following(
            self,
            Path(path),
            after_seq,
            encode=encode,
            idle_s=idle_s,
            until_terminal=until_terminal,
        )

    def _board_key(self, path: str | os.PathLike[str]) -> str | None:
        return records.log_key(path) if self.from_board else None

    async def read_records(self, path: str | os.PathLike[str], after_seq: int = 0) -> list[Record]:
        """Every record of the log after ``after_seq``, as it is now."""
        key = self._board_key(path)
        if key is None:
            return await trio.to_thread.run_sync(sessionlog.read_records, path, after_seq)
        return await db.call(records.read_all, key, after_seq)

    async def last_record(self, path: str | os.PathLike[str]) -> Record | None:
        """The log's last record as it is now (None: empty or missing)."""
        key = self._board_key(path)
        if key is None:
            return await trio.to_thread.run_sync(sessionlog.last_record, path)
        return await db.call(records.last_record, key)

    def _join(self, path: Path) -> _Tail:
        tail = self._tails.get(path)
        if tail is None or tail.records.closed:
            key = self._board_key(path)
            tail = _Tail(path, LogCursor(path), key=key)
            self._tails[path] = tail
            serve = self._serve_tail
            if key is not None:
                self._board_tails[key] = tail
                serve = self._serve_board_tail
            # start_soon, not start: registering the tail and counting the
            # follower happen in one step, so no follower can see a tail
            # whose reader has already decided to stop.
            self._nursery.start_soon(serve, tail, name=f"log reader {path.name}")
        tail.followers += 1
        return tail

    def wake_stored(self, key: str | None) -> None:
        """The board says the log ``key`` gained records (None: any log may
        have, after a lost notification)."""
        tails = self._board_tails.values() if key is None else [self._board_tails.get(key)]
        for tail in tails:
            if tail is not None:
                tail.stored.set()

    async def _serve_board_tail(self, tail: _Tail) -> None:
        assert tail.key is not None
        after_seq = 0
        try:
            while True:
                tail.stored = trio.Event()
                batch = await db.call(records.read, tail.key, after_seq)
                if batch:
                    tail.records.publish((_seq(record), record) for record in batch)
                    after_seq = _seq(batch[-1])
                    if len(batch) >= records.BATCH_RECORDS:
                        continue
                if tail.followers <= 0:
                    return
                with trio.move_on_after(BOARD_POLL_S):
                    await tail.stored.wait()
                if tail.followers <= 0:
                    return
        except Exception:
            log.exception("reading the records of %s failed; its followers are ended", tail.key)
        finally:
            self._forget(tail)

    async def _serve_tail(self, tail: _Tail) -> None:
        ended = False  # the newest record read is a terminal one
        read_at = -MIN_READ_GAP_S
        try:
            while True:
                changed = self._watch.arm(tail.path)
                grown = _grown_by(tail)
                if grown:
                    read_at = trio.current_time()
                    if grown > INLINE_READ_BYTES:
                        records = await trio.to_thread.run_sync(tail.cursor.read_new)
                    else:
                        records = tail.cursor.read_new()
                    if records:
                        tail.records.publish((_seq(record), record) for record in records)
                        ended = is_terminal(records[-1])
                if tail.followers <= 0:
                    return
                if changed is not None:
                    await wait_changed(changed, self.watched_poll_s)
                    await trio.sleep_until(read_at + MIN_READ_GAP_S)
                else:
                    # After a terminal record more is unlikely (a chat's next
                    # turn): look less often.
                    await trio.sleep(self.poll_s * (10 if ended else 1))
                if tail.followers <= 0:
                    return
        except Exception:
            log.exception("reading %s failed; its followers are ended", tail.path)
        finally:
            self._forget(tail)
            tail.cursor.report()

    def _forget(self, tail: _Tail) -> None:
        """A tail whose reading ended: no longer found, its followers ended."""
        if self._tails.get(tail.path) is tail:
            del self._tails[tail.path]
        if tail.key is not None and self._board_tails.get(tail.key) is tail:
            del self._board_tails[tail.key]
        tail.records.close()


def _grown_by(tail: _Tail) -> int:
    try:
        size = os.stat(tail.path).st_size
    except FileNotFoundError:
        return 0
    return size - tail.cursor.offset


async def serve_log_hub(
    *,
    poll_s: float = POLL_S,
    watch: FileWatch | None = None,
    task_status: trio.TaskStatus[LogHub] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a hub, reported through ``task_status``, until cancelled; its
    readers run in a nursery of its own. Without ``watch`` every log is polled."""
    async with trio.open_nursery() as readers:
        hub = LogHub(readers, poll_s, watch)
        if hub.from_board:
            await readers.start(_serve_board_wakeups, hub)
        task_status.started(hub)
        await trio.sleep_forever()


async def _serve_board_wakeups(hub: LogHub, *, task_status: trio.TaskStatus[None]) -> None:
    """Wake the hub's board readers as the board's notifications come."""
    async with notify.listening([notify.RECORDS]) as listener:
        assert listener is not None
        task_status.started()
        while True:
            for notification in await listener.wait():
                if notification.channel == notify.RECORDS:
                    hub.wake_stored(notification.payload)
                else:
                    hub.wake_stored(None)
