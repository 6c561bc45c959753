"""When the board may have changed, for the web's watchers of it (the change
feed, job streams waiting for a run or its outcome).

Every commit to a SQLite board in WAL mode appends to ``board.db-wal``,
whichever process makes it, so a change of that file is the board's change
signal: watchers wake within a millisecond of the supervisor finishing a run
instead of at their next poll.

On PostgreSQL the board is shared by nodes that share no files: every commit
that records an event notifies :data:`~crewboard.board.notify.BOARD` (see
:mod:`crewboard.board.events`), and :meth:`BoardChanges.listen` turns those
notifications, from whichever node, into the same signal. Until it listens,
and on a board with neither, watchers poll.
"""

from __future__ import annotations

from pathlib import Path

import trio

from crewboard.board import notify
from crewboard.fswatch import FileWatch, wait_changed

# With the board watched, watchers still look this often, in case a change
# went unseen.
WATCHED_POLL_S = 1.0


class BoardChanges:
    def __init__(self, watch: FileWatch, board_db: Path | None) -> None:
        self._watch = watch
        self._wal = None if board_db is None else board_db.with_name(board_db.name + "-wal")
        self.watched_poll_s = WATCHED_POLL_S
        # Set at the next notification, while :meth:`listen` listens.
        self._notified: trio.Event | None = None

    def arm(self) -> trio.Event | None:
        """An event set at the board's next commit after this call, or None
        where commits cannot be seen (poll instead)."""
        if self._wal is not None:
            return self._watch.arm(self._wal)
        return self._notified

    async def wait(self, changed: trio.Event | None, poll_s: float) -> None:
        """Until ``changed`` (from :meth:`arm`) is set, for at most
        ``watched_poll_s``; ``poll_s`` where commits cannot be seen."""
        await wait_changed(changed, poll_s if changed is None else self.watched_poll_s)

    async def listen(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """On PostgreSQL, until cancelled: wake the armed watchers at each
        notification that events were committed (and after the listening
        connection was lost and made again, since what was sent meanwhile is
        gone). Reports started once listening; returns at once on SQLite."""
        async with notify.listening([notify.BOARD]) as listener:
            if listener is None:
                task_status.started()
                return
            self._notified = trio.Event()
            task_status.started()
            try:
                while True:
                    await listener.wait()
                    self._wake(trio.Event())
            finally:
                self._wake(None)

    def _wake(self, then: trio.Event | None) -> None:
        woken, self._notified = self._notified, then
        if woken is not None:
            woken.set()
