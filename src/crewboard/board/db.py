"""Opening board.db and running transactions on it.

SQLite is the embedded default: WAL, a busy timeout, foreign keys on, and every
write transaction begins IMMEDIATE, so two processes writing at once queue for
the lock instead of failing mid-transaction with "database is locked".
``CREWBOARD_DATABASE_URL`` may point the board at PostgreSQL instead.

Board functions are plain synchronous peewee code. Async callers (the web
process, the supervisor) reach them through :func:`call`, which runs them on a
worker thread so the event loop never blocks on the database.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import peewee

log = logging.getLogger(__name__)

database = peewee.DatabaseProxy()

BUSY_TIMEOUT_MS = 15_000
_LOCK_RETRIES = 8

P = ParamSpec("P")
T = TypeVar("T")


def connect(path: str | Path | None = None, url: str | None = None) -> peewee.Database:
    """Bind the models to a database and bring its schema up to date."""
    if url:
        from playhouse.db_url import connect as connect_url

        db = connect_url(url)
    else:
        assert path is not None
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = peewee.SqliteDatabase(
            str(path),
            pragmas={
                "journal_mode": "wal",
                "busy_timeout": BUSY_TIMEOUT_MS,
                "foreign_keys": 1,
                "synchronous": "normal",
            },
            timeout=BUSY_TIMEOUT_MS / 1000,
            lock_type="IMMEDIATE",
            autoconnect=True,
        )
    database.initialize(db)
    from crewboard.board.migrations import migrate

    migrate(db)
    return db


def close() -> None:
    if database.obj is not None and not database.is_closed():
        database.close()


def is_sqlite() -> bool:
    return isinstance(database.obj, peewee.SqliteDatabase)


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


@contextmanager
def transaction() -> Iterator[None]:
    """One write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
    with database.atomic():
        yield


def write(fn: Callable[P, T]) -> Callable[P, T]:
    """Run a board function as one write transaction, retrying the whole
    function if SQLite still reports a lock after its busy timeout (a long
    checkpoint, say): callers never see "database is locked".

    Called while this thread already has a transaction open, the function
    runs inside it: no BEGIN of its own and no retry of its own. So a
    transition made of others (a schedule's fire writes a crew with
    ``create_crew``) is still one transaction; the inner writes commit, roll
    back and are retried with the outer ones."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        if database.in_transaction():
            return fn(*args, **kwargs)
        for attempt in range(_LOCK_RETRIES):
            try:
                with database.atomic():
                    return fn(*args, **kwargs)
            except peewee.OperationalError as exc:
                if not _is_lock_error(exc) or attempt == _LOCK_RETRIES - 1:
                    raise
                log.warning("board busy, retrying %s (%s)", fn.__name__, exc)
                time.sleep(0.05 * (2**attempt) * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    return wrapper


_limiter: Any = None


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a synchronous board function on a worker thread (at most eight at
    once per event loop, each with its own connection)."""
    import trio

    global _limiter
    if _limiter is None:
        _limiter = trio.lowlevel.RunVar("board_limiter")
    try:
        limiter = _limiter.get()
    except LookupError:
        limiter = trio.CapacityLimiter(8)
        _limiter.set(limiter)
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=limiter)
