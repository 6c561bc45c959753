"""When the board may have changed, for the web's watchers of it (the change
feed, job streams waiting for a run or its outcome).

Every commit to a SQLite board in WAL mode appends to ``board.db-wal``,
whichever process makes it, so a change of that file is the board's change
signal: watchers wake within a millisecond of the supervisor finishing a run
instead of at their next poll. On PostgreSQL nothing is watched and watchers
poll as before.
"""

from __future__ import annotations

from pathlib import Path

import trio

from crewboard.fswatch import FileWatch, wait_changed

# With the board watched, watchers still look this often, in case a change
# went unseen.
WATCHED_POLL_S = 1.0


class BoardChanges:
    def __init__(self, watch: FileWatch, board_db: Path | None) -> None:
        self._watch = watch
        self._wal = None if board_db is None else board_db.with_name(board_db.name + "-wal")
        self.watched_poll_s = WATCHED_POLL_S

    def arm(self) -> trio.Event | None:
        """An event set at the board's next commit after this call, or None
        where commits cannot be seen (poll instead)."""
        return None if self._wal is None else self._watch.arm(self._wal)

    async def wait(self, changed: trio.Event | None, poll_s: float) -> None:
        """Until ``changed`` (from :meth:`arm`) is set, for at most
        ``watched_poll_s``; ``poll_s`` where commits cannot be seen."""
        await wait_changed(changed, poll_s if changed is None else self.watched_poll_s)
