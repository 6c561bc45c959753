"""Waking tasks when a file changes, by inotify, with a poll where it cannot.

One :class:`FileWatch` per process watches the folders of the files its tasks
follow (a session log's folder, the board's WAL), so a follower wakes within
a millisecond of another process's write instead of at its next poll. A task
*arms* first, then looks at the file, then waits::

    changed = watch.arm(path)
    ...read what is there...
    await wait_changed(changed, fallback_s=1.0)

so a write between the look and the wait still wakes it. Every task armed on
one path shares one event, so a thousand followers cost one entry. Where
changes cannot be seen — no inotify (not Linux, or its limits reached), a
folder that does not exist yet, a network file system that does not report
remote writes — :meth:`FileWatch.arm` gives None and the wait is the poll it
replaces; the fallback also bounds the wait when it can.
"""

from __future__ import annotations

import logging
from pathlib import Path

import trio

log = logging.getLogger(__name__)

try:
    from inotify_simple import INotify, flags
except ImportError:  # not Linux: every wait is a poll
    INotify = None

if INotify is not None:
    # What makes a followed file worth another look: appended to, created or
    # renamed into place. Folder-level watches report these for every file
    # in the folder, so one watch serves every log in it.
    _MASK = flags.MODIFY | flags.CREATE | flags.MOVED_TO | flags.CLOSE_WRITE
    # The folder itself went away (its watch is dropped), or the kernel's
    # queue overflowed (events were lost): every armed task looks again.
    _LOST = flags.IGNORED | flags.Q_OVERFLOW


class FileWatch:
    """The changes of followed files, for the tasks of one process. Runs
    (:meth:`serve`) from startup to shutdown; before it runs, or where
    inotify is missing, :meth:`arm` gives None."""

    def __init__(self) -> None:
        self._inotify: INotify | None = None
        self._folders: dict[Path, int] = {}
        self._folder_of: dict[int, Path] = {}
        self._armed: dict[Path, trio.Event] = {}

    @property
    def watching(self) -> bool:
        return self._inotify is not None

    def arm(self, path: Path) -> trio.Event | None:
        """An event set at the next change of ``path`` after this call, or
        None if its changes cannot be seen (poll instead)."""
        if self._inotify is None or not self._watch(path.parent):
            return None
        event = self._armed.get(path)
        if event is None:
            event = self._armed[path] = trio.Event()
        return event

    def _watch(self, folder: Path) -> bool:
        if folder in self._folders:
            return True
        assert self._inotify is not None
        try:
            wd = self._inotify.add_watch(folder, _MASK)
        except OSError as exc:
            # Missing folder (watched once it exists), or the user's watch limit.
            log.debug("cannot watch %s: %s; following it by polling", folder, exc)
            return False
        self._folders[folder] = wd
        self._folder_of[wd] = folder
        return True

    async def serve(
        self, *, task_status: trio.TaskStatus[FileWatch] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Read changes and wake the tasks armed on them, until cancelled."""
        if INotify is None:
            task_status.started(self)
            await trio.sleep_forever()
        try:
            inotify = INotify(nonblocking=True)
        except OSError as exc:
            log.warning("inotify is not available (%s); log followers poll", exc)
            task_status.started(self)
            await trio.sleep_forever()
        self._inotify = inotify
        try:
            task_status.started(self)
            while True:
                await trio.lowlevel.wait_readable(inotify.fileno())
                try:
                    events = inotify.read(timeout=0)
                except BlockingIOError:
                    continue
                for event in events:
                    self._changed(event.wd, event.mask, event.name)
        finally:
            self._inotify = None
            for armed in self._armed.values():
                armed.set()
            self._armed.clear()
            self._folders.clear()
            self._folder_of.clear()
            inotify.close()

    def _changed(self, wd: int, mask: int, name: str) -> None:
        folder = self._folder_of.get(wd)
        if mask & _LOST or folder is None:
            if mask & flags.IGNORED and folder is not None:
                del self._folder_of[wd]
                self._folders.pop(folder, None)
            for armed in self._armed.values():
                armed.set()
            self._armed.clear()
            return
        waiting = self._armed.pop(folder / name, None)
        if waiting is not None:
            waiting.set()


async def wait_changed(changed: trio.Event | None, fallback_s: float) -> None:
    """Until ``changed`` is set, or ``fallback_s`` has passed (at once, for
    an event already set; the whole fallback for None)."""
    with trio.move_on_after(fallback_s):
        if changed is None:
            await trio.sleep_forever()
        await changed.wait()
