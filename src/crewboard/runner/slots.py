"""Model slots: at most N requests at once to one provider, across every
runner of the host (job runs and chat turns alike).

A provider's state folder (``<home>/run/providers/<name>/``, handed to the
runner in its spec) holds ``slot-<i>.lock`` for i < N. A runner holds a slot
for one model request by taking an exclusive ``flock`` on one of them; the
kernel drops it when the file is closed or the process dies, so a killed
runner never leaks a slot.

A runner that finds them all taken queues in ``waiting/``: a file named by
its arrival time, itself flock'ed so the others can tell a live waiter from
one a crash left behind (they delete those). Only the first N waiters try the
slots, so the queue is first come, first served; each polls on a short wake.
What it reports while it waits is how many requests are ahead of it: those
holding the slots and the waiters that came before it.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

WAKE_S = 0.2


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding ``path``'s exclusive lock, or None if taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class SlotPool:
    """The ``size`` slots of one provider, in ``folder``."""

    def __init__(
        self,
        folder: Path,
        size: int,
        *,
        wake_s: float = WAKE_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if size < 1:
            raise ValueError("a slot pool needs at least one slot")
        self.folder = folder
        self.size = size
        self.wake_s = wake_s
        self._sleep = sleep
        self._queue = folder / "waiting"

    def _take_free(self) -> int | None:
        for index in range(self.size):
            fd = _try_lock(self.folder / f"slot-{index}.lock")
            if fd is not None:
                return fd
        return None

    def _join_queue(self) -> tuple[Path, int]:
        """Enter the queue: a locked file, renamed into place only once locked
        so no one mistakes it for a dead waiter's."""
        self._queue.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{time.time_ns():020d}-{os.getpid()}"
        staging = self._queue / f".{name}"
        fd = _try_lock(staging)
        assert fd is not None, "a fresh file is never locked"
        path = self._queue / name
        os.rename(staging, path)
        return path, fd

    def _waiters_before(self, mine: Path) -> int:
        """Live waiters that came before ``mine``; dead ones are cleared away."""
        ahead = 0
        for path in sorted(self._queue.iterdir()):
            if path.name.startswith(".") or path.name >= mine.name:
                continue
            fd = _try_lock(path)
            if fd is None:
                ahead += 1
                continue
            try:  # its owner died while waiting
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        return ahead

    @contextmanager
    def hold(self, on_wait: Callable[[int], None] = lambda ahead: None) -> Iterator[None]:
        """Hold one slot for the block, waiting for one if need be;
        ``on_wait(ahead)`` is called when the wait starts and whenever the
        number of requests ahead changes."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        slot = self._take_free() if not self._queue_is_busy() else None
        if slot is None:
            slot = self._wait(on_wait)
        try:
            yield
        finally:
            os.close(slot)  # closing the descriptor releases the lock

    def _queue_is_busy(self) -> bool:
        try:
            return any(not p.name.startswith(".") for p in self._queue.iterdir())
        except FileNotFoundError:
            return False

    def _wait(self, on_wait: Callable[[int], None]) -> int:
        mine, queue_fd = self._join_queue()
        try:
            reported: int | None = None
            while True:
                before = self._waiters_before(mine)
                slot = self._take_free() if before < self.size else None
                if slot is not None:
                    return slot
                ahead = self.size + before
                if ahead != reported:
                    on_wait(ahead)
                    reported = ahead
                self._sleep(self.wake_s)
        finally:
            mine.unlink(missing_ok=True)
            os.close(queue_fd)
