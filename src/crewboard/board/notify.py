"""PostgreSQL's ``LISTEN``/``NOTIFY``: how one node tells the others that the
board changed, without any of them polling.

:func:`notify` queues a notification inside the caller's transaction; the
server delivers it to every listener when (and only if) that transaction
commits, and folds repeats of the same channel and payload within one
transaction into one. On SQLite it does nothing: one host shares one board
file, and its followers watch that file (:mod:`crewboard.fswatch`).

:class:`Listener` holds its own connection, outside peewee's pool, in
autocommit mode, and waits for notifications on trio. A notification says
only *that* something changed; listeners then read the board. A listener
that lost its connection reconnects and reports :data:`RECONNECTED`, since
whatever was sent while it was away is gone: its reader must look again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import trio

from crewboard.board import db

log = logging.getLogger(__name__)

# The supervisors' wake-up: there may be work to claim.
WAKE = "crewboard_wake"
# Events were recorded: the board feed and job streams look again.
BOARD = "crewboard_board"
# A run's or chat's records reached the board; the payload names the log.
RECORDS = "crewboard_records"

# What :meth:`Listener.wait` reports after reconnecting.
RECONNECTED = "reconnected"

# PostgreSQL refuses payloads of 8000 bytes or more.
MAX_PAYLOAD = 7999
_RECONNECT_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)


def enabled() -> bool:
    """Whether the board is on PostgreSQL, where notifications exist."""
    return db.database.obj is not None and not db.is_sqlite()


def notify(channel: str, payload: str = "") -> None:
    """Tell every listener on ``channel``, when the current transaction
    commits (at once, outside one). Nothing on SQLite."""
    if not enabled():
        return
    if len(payload.encode()) > MAX_PAYLOAD:
        raise ValueError(f"a notification's payload must stay under {MAX_PAYLOAD + 1} bytes")
    db.database.execute_sql("SELECT pg_notify(%s, %s)", (channel, payload))


@dataclass(frozen=True)
class Notification:
    channel: str
    payload: str


class Listener:
    """One connection listening on ``channels``. Use it as an async context
    manager, then ``await wait()`` for the next batch of notifications."""

    def __init__(self, channels: Iterable[str]) -> None:
        self.channels = tuple(channels)
        self._conn: Any = None

    async def __aenter__(self) -> Listener:
        await trio.to_thread.run_sync(self._connect)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._close()

    def _connect(self) -> None:
        import psycopg2  # type: ignore[import-untyped]

        params = dict(db.database.obj.connect_params)
        params.setdefault("dbname", db.database.obj.database)
        conn = psycopg2.connect(**params)
        conn.autocommit = True
        with conn.cursor() as cursor:
            for channel in self.channels:
                cursor.execute(f'LISTEN "{channel}"')
        self._conn = conn

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    async def wait(self) -> list[Notification]:
        """The notifications that arrived since the last call, waiting for at
        least one; ``[Notification(RECONNECTED, "")]`` after the connection
        was lost and made again."""
        while True:
            try:
                got = self._drain()
                if got:
                    return got
                await trio.lowlevel.wait_readable(self._conn)
            except Exception as exc:
                if self._conn is not None and not _is_connection_error(exc):
                    raise
                log.warning("lost the board's notification connection (%s); reconnecting", exc)
                await self._reconnect()
                return [Notification(RECONNECTED, "")]

    def _drain(self) -> list[Notification]:
        self._conn.poll()
        got = [Notification(n.channel, n.payload) for n in self._conn.notifies]
        self._conn.notifies.clear()
        return got

    async def _reconnect(self) -> None:
        self._close()
        for attempt in range(1_000_000):
            try:
                await trio.to_thread.run_sync(self._connect)
                return
            except Exception as exc:
                if not _is_connection_error(exc):
                    raise
                delay = _RECONNECT_BACKOFF_S[min(attempt, len(_RECONNECT_BACKOFF_S) - 1)]
                await trio.sleep(delay)


def _is_connection_error(exc: BaseException) -> bool:
    import psycopg2

    return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError, OSError))


@contextlib.asynccontextmanager
async def listening(channels: Iterable[str]) -> AsyncIterator[Listener | None]:
    """A :class:`Listener` on PostgreSQL; ``None`` on SQLite."""
    if not enabled():
        yield None
        return
    async with Listener(channels) as listener:
        yield listener
