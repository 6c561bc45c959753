"""The supervisor's wake-up: a unix datagram socket in the home that the web
process nudges after writing user intent (see :mod:`crewboard.wakeup`), and
the in-process :class:`Wakeup` the dispatcher waits on between polls. Finished
runs and recovered orphans set the same :class:`Wakeup`, since each may free
a slot or make a job ready.

On PostgreSQL, supervisors on other hosts cannot reach that socket: there
each one also listens for :data:`~crewboard.board.notify.WAKE`, which the
board's writes of user intent send as they commit
(:mod:`crewboard.board.wake`), so work created on any host is claimed as
promptly as work created beside the supervisor."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path

import trio

from crewboard.board import db, notify
from crewboard.wakeup import EVERYTHING, woken_parts

log = logging.getLogger(__name__)

# How long to wait before listening again when the board could not be reached.
_RELISTEN_S = 2.0


class Wakeup:
    """A level-triggered nudge: :meth:`set` any number of times, and the next
    :meth:`wait` after it returns at once. The waiter :meth:`clear`\\ s it just
    before looking at the board, so a nudge that lands while it looks is kept
    for the next round rather than lost."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = trio.Event()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


@contextlib.asynccontextmanager
async def open_wake_socket(path: Path) -> AsyncIterator[trio.socket.SocketType | None]:
    """Bind the wake socket at ``path``, replacing a stale one left by a
    supervisor that died; removed again on exit. Yields None (polling still
    works) if the socket cannot be bound, e.g. a path too long for AF_UNIX."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    identity: tuple[int, int] | None = None
    try:
        await trio.to_thread.run_sync(_unlink_if_present, path)
        try:
            # Only the owner (and so the web process, running as the same user) may write.
            old_umask = os.umask(0o177)
            try:
                await sock.bind(str(path))
            finally:
                os.umask(old_umask)
        except OSError as exc:
            log.warning("cannot bind the wake socket %s (%s); relying on polling", path, exc)
            sock.close()
            yield None
            return
        identity = await trio.to_thread.run_sync(_identity, path)
        if identity is None:
            # Another supervisor on this home took the path a moment ago; it
            # gets the wake-ups and this one relies on polling.
            log.warning("another supervisor took the wake socket %s; relying on polling", path)
        yield sock
    finally:
        sock.close()
        if identity is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_remove_if_ours, path, identity)


def _unlink_if_present(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _identity(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path``, None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _remove_if_ours(path: Path, identity: tuple[int, int]) -> None:
    """Remove the socket at ``path`` only if it is still ours, not a successor's."""
    with contextlib.suppress(OSError):
        if _identity(path) == identity:
            os.unlink(path)


async def serve_wake_socket(
    sock: trio.socket.SocketType | None,
    wakeups: Mapping[str, Wakeup],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Turn every datagram on the wake socket into a :meth:`Wakeup.set` of
    the ``wakeups`` (by part, :mod:`crewboard.wakeup`) it names."""
    task_status.started()
    if sock is None:
        await trio.sleep_forever()
    while True:
        _set(wakeups, woken_parts(await sock.recv(256)))


async def serve_wake_notifications(
    wakeups: Mapping[str, Wakeup],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """On PostgreSQL, turn every :data:`~crewboard.board.notify.WAKE` into a
    :meth:`Wakeup.set` of the ``wakeups`` (by part) it names, and every
    reconnection, after which wake-ups may have been missed, into a set of
    them all. Ready once listening; on SQLite, or if the board cannot be
    reached at start, ready at once and the poll does the work until a
    connection is made."""
    if not notify.enabled():
        task_status.started()
        await trio.sleep_forever()
    ready = False
    while True:
        try:
            async with notify.listening([notify.WAKE]) as listener:
                assert listener is not None
                if not ready:
                    task_status.started()
                    ready = True
                while True:
                    for notification in await listener.wait():
                        if notification.channel == notify.RECONNECTED:
                            _set(wakeups, EVERYTHING)
                        else:
                            _set(wakeups, woken_parts(notification.payload))
        except Exception as exc:
            if not db.is_transient_error(exc):
                raise
            log.warning("cannot listen for wake-ups (%s); polling until the board answers", exc)
        if not ready:
            task_status.started()
            ready = True
        # Whatever was sent while no one listened is for the poll to find.
        _set(wakeups, EVERYTHING)
        await trio.sleep(_RELISTEN_S)


def _set(wakeups: Mapping[str, Wakeup], parts: Iterable[str]) -> None:
    for part in parts:
        wakeup = wakeups.get(part)
        if wakeup is not None:
            wakeup.set()
