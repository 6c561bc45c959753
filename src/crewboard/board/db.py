"""Opening board.db and running transactions on it.

SQLite is the embedded default: WAL, a busy timeout, foreign keys on, and every
write transaction begins IMMEDIATE, so two processes writing at once queue for
the lock instead of failing mid-transaction with "database is locked".
``CREWBOARD_DATABASE_URL`` may point the board at PostgreSQL instead: then
each process keeps a bounded pool of connections (:func:`connect`), and every
statement has a time limit, so a statement stuck behind a lock fails with a
clear error (:func:`is_statement_timeout`) instead of holding its caller.

Board functions are plain synchronous peewee code. Async callers (the web
process, the supervisor) reach them through :func:`call`, which runs them on a
worker thread so the event loop never blocks on the database.

Errors the database raises are sorted here, once: :func:`is_transient_error`
(worth retrying: the disk is full, an I/O error, a lock, a lost connection,
a statement past its time limit), :func:`is_disk_full` (the web answers it
507) and :func:`is_board_busy` (the web answers it 503).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import peewee

from crewboard import metrics

log = logging.getLogger(__name__)

database = peewee.DatabaseProxy()

BUSY_TIMEOUT_MS = 15_000
_LOCK_RETRIES = 8
# PostgreSQL: the longest one statement may run, and the connections one
# process may hold at once (the web's and supervisor's worker threads take one
# each while they run a board call). Idle connections are replaced after
# STALE_AFTER_S, so a server-side idle timeout never hands out a dead one.
STATEMENT_TIMEOUT_S = 30.0
POOL_SIZE = 10
STALE_AFTER_S = 300

P = ParamSpec("P")
T = TypeVar("T")


def connect(
    path: str | Path | None = None,
    url: str | None = None,
    *,
    statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    pool_size: int = POOL_SIZE,
) -> peewee.Database:
    """Bind the models to a database and bring its schema up to date: the
    SQLite file at ``path``, or the PostgreSQL server at ``url`` through a
    pool of at most ``pool_size`` connections whose statements each stop
    after ``statement_timeout_s`` (0: no limit)."""
    if url:
        db: peewee.Database = _postgres_pool(url, statement_timeout_s, pool_size)
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
    release()
    return db


def _postgres_pool(url: str, statement_timeout_s: float, pool_size: int) -> peewee.Database:
    """A pooled PostgreSQL database for ``url``. A thread waits up to the
    statement timeout (the default one, if statements have no limit) for a
    free connection before the call fails as busy."""
    from playhouse.db_url import parse
    from playhouse.pool import PooledPostgresqlDatabase

    if pool_size < 1:
        raise ValueError("the pool needs room for at least one connection")
    params = parse(url)
    name = params.pop("database")
    timeout_ms = round(statement_timeout_s * 1000)
    options = " ".join(
        filter(None, [params.pop("options", ""), f"-c statement_timeout={timeout_ms}"])
    )
    return PooledPostgresqlDatabase(
        name,
        max_connections=pool_size,
        stale_timeout=STALE_AFTER_S,
        timeout=statement_timeout_s or STATEMENT_TIMEOUT_S,
        options=options,
        **params,
    )


def _is_pooled() -> bool:
    from playhouse.pool import PooledDatabase

    return isinstance(database.obj, PooledDatabase)


def release() -> None:
    """Hand this thread's connection back to the pool (PostgreSQL), unless a
    transaction still holds it. Threads are reused and idle most of the time:
    holding a connection each would exhaust the pool and the server's slots.
    SQLite keeps its per-thread connection, with its statement cache."""
    if database.obj is None or not _is_pooled():
        return
    if not database.is_closed() and not database.in_transaction():
        database.close()


def close() -> None:
    """Close this thread's connection; on PostgreSQL, the pool's idle ones
    too, never one another thread is using."""
    if database.obj is None:
        return
    if not database.is_closed():
        database.close()
    if _is_pooled():
        database.obj.close_idle()


def is_sqlite() -> bool:
    return isinstance(database.obj, peewee.SqliteDatabase)


@functools.cache
def _for_engine(sql: str, sqlite: bool) -> str:
    """``sql`` as this engine's driver takes it. Hot-path statements are
    written once for both, in SQLite's dialect: ``?`` placeholders and
    ``json(?)`` for a JSON value (PostgreSQL takes ``%s`` and casts JSON text
    on its own). The statements hold no other ``?`` or ``%``."""
    if sqlite:
        return sql
    return sql.replace("json(?)", "?").replace("?", "%s")


def execute(sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
    """Run one hand-written statement and return its cursor. The text is a
    constant, so SQLite's per-connection statement cache prepares it once:
    the hot transitions of :mod:`crewboard.board.dispatch` skip building SQL
    through peewee's query objects, which cost more than SQLite itself."""
    return database.execute_sql(_for_engine(sql, is_sqlite()), params)


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


# errno values of a write refused for lack of room (the disk, or the user's quota).
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# SQLite's primary result codes: SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL.
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_FULL = 5, 6, 10, 13
# PostgreSQL's SQLSTATEs for disk_full and query_canceled (what a statement
# past statement_timeout raises).
_PG_DISK_FULL = "53100"
_PG_QUERY_CANCELED = "57014"


def _unmasked(exc: BaseException) -> BaseException:
    """The error a failed rollback hides. SQLite rolls a transaction back by
    itself on some errors (a full disk, an I/O error); the rollback peewee
    then attempts fails with "no transaction is active", raised in place of
    the error that matters."""
    # Through the driver's error, which peewee's wrapper was raised from.
    while "no transaction is active" in str(exc) and isinstance(exc.__context__, Exception):
        exc = exc.__context__
    return exc


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: peewee re-raises a driver's error keeping
    the original (as ``orig``), our own code chains with ``from``, and a
    failed rollback hides the error that caused it (:func:`_unmasked`)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.append(current.__cause__)
        pending.append(_unmasked(current))
        original = getattr(current, "orig", None)
        if isinstance(original, BaseException):
            pending.append(original)


def _sqlite_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _is_psycopg2(exc: BaseException, *names: str) -> bool:
    """Whether ``exc`` is one of psycopg2's errors of these class names (or a
    subclass of one), without importing psycopg2 where it is not installed."""
    return any(
        cls.__module__.startswith("psycopg2") and cls.__name__ in names for cls in type(exc).__mro__
    )


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the disk has no room left for
    a write: ENOSPC/EDQUOT, SQLite's "database or disk is full", or
    PostgreSQL's ``disk_full``."""
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.errno in _NO_SPACE_ERRNOS:
            return True
        if isinstance(cause, sqlite3.Error) and (
            _sqlite_code(cause) == _SQLITE_FULL or "disk is full" in str(cause).lower()
        ):
            return True
        if getattr(cause, "pgcode", None) == _PG_DISK_FULL or _is_psycopg2(cause, "DiskFull"):
            return True
    return False


def is_statement_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is PostgreSQL cancelling a
    statement that ran past ``statement_timeout`` (waiting for a lock
    another connection held, say)."""
    return any(
        getattr(cause, "pgcode", None) == _PG_QUERY_CANCELED
        or _is_psycopg2(cause, "QueryCanceled", "QueryCanceledError")
        for cause in _causes(exc)
    )


def _is_pool_exhausted(exc: BaseException) -> bool:
    return any(type(cause).__name__ == "MaxConnectionsExceeded" for cause in _causes(exc))


def is_board_busy(exc: BaseException) -> bool:
    """Whether the board could not serve a call in time, through no fault of
    the call: a statement past its time limit, no free connection in the pool
    within that time, or the connection to PostgreSQL lost; not a full disk
    (:func:`is_disk_full`). The same call may well succeed a moment later."""
    if is_disk_full(exc):
        return False
    return is_statement_timeout(exc) or _is_pool_exhausted(exc) or _is_connection_lost(exc)


def is_transient_error(exc: BaseException) -> bool:
    """Whether a board call that raised ``exc`` may well succeed if tried
    again later, nothing about the call itself being wrong: the disk is full
    (:func:`is_disk_full`), an I/O error, a lock still held after the busy
    timeout, or PostgreSQL busy (:func:`is_board_busy`: a statement past
    its time limit, the pool exhausted, the connection lost). Anything else —
    a bug, a constraint, a schema mismatch — fails the same way every time."""
    if is_disk_full(exc) or _is_pool_exhausted(exc):
        return True
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.errno == errno.EIO:
            return True
        if isinstance(cause, sqlite3.Error) and (
            _sqlite_code(cause) in (_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR)
            or "disk i/o error" in str(cause).lower()
            or (isinstance(cause, sqlite3.OperationalError) and _is_lock_error(cause))
        ):
            return True
        if _is_psycopg2(cause, "OperationalError", "InterfaceError"):
            return True
    return False


def _is_connection_lost(exc: BaseException) -> bool:
    return any(_is_psycopg2(c, "OperationalError", "InterfaceError") for c in _causes(exc))


@contextmanager
def transaction() -> Iterator[None]:
    """One write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
    with database.atomic():
        yield


# A process's SQLite writers queue here, each woken the moment the one before
# commits, rather than in SQLite's busy handler, which sleeps 1 ms, 2, 5...
# between looks (a supervisor's runs ending at once slept about once a job).
_sqlite_writer = threading.Lock()


def _writers_take_turns() -> contextlib.AbstractContextManager[Any]:
    return _sqlite_writer if is_sqlite() else contextlib.nullcontext()


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
                with _writers_take_turns(), database.atomic():
                    return fn(*args, **kwargs)
            except peewee.OperationalError as exc:
                hidden = _unmasked(exc)
                if hidden is not exc:
                    raise hidden from None
                if not _is_lock_error(exc) or attempt == _LOCK_RETRIES - 1:
                    raise
                log.warning("board busy, retrying %s (%s)", fn.__name__, exc)
                metrics.board_write_retried(fn.__name__)
                time.sleep(0.05 * (2**attempt) * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    return wrapper


_limiter: Any = None


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a synchronous board function on a worker thread (at most eight at
    once per event loop). On SQLite each thread keeps its own connection; on
    PostgreSQL the call takes one from the pool and gives it back when done."""
    import trio

    global _limiter
    if _limiter is None:
        _limiter = trio.lowlevel.RunVar("board_limiter")
    try:
        limiter = _limiter.get()
    except LookupError:
        limiter = trio.CapacityLimiter(8)
        _limiter.set(limiter)
    return await trio.to_thread.run_sync(
        functools.partial(_call_on_thread, fn, *args, **kwargs), limiter=limiter
    )


def _call_on_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if _is_connection_lost(exc) and not is_statement_timeout(exc):
            # Drop a dead connection, so the next call connects afresh
            # rather than reusing it (from the pool, or on this thread).
            with contextlib.suppress(Exception):
                if _is_pooled():
                    database.obj.manual_close()
                else:
                    database.close()
        raise
    finally:
        release()
