"""Which board errors are worth retrying and which mean a full disk, as the
drivers raise them and as peewee wraps them (a full disk behind SQLite's own
rollback too)."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import peewee
import psycopg2
import psycopg2.errors
import pytest
from playhouse.pool import MaxConnectionsExceeded

from crewboard.board.db import is_board_busy, is_disk_full, is_transient_error


def wrapped(driver_error: Exception) -> peewee.PeeweeException:
    """``driver_error`` as peewee raises it from a query."""
    try:
        with peewee.__exception_wrapper__:
            raise driver_error
    except peewee.PeeweeException as exc:
        return exc
    raise AssertionError("not wrapped")


def behind_a_failed_rollback(tmp_path: Path, error: Exception) -> Exception:
    """What a transaction raises when SQLite rolled it back itself on
    ``error`` and peewee's own rollback then fails."""
    database = peewee.SqliteDatabase(str(tmp_path / "board.db"))
    database.execute_sql("CREATE TABLE t (x)")
    try:
        with database.atomic():
            database.execute_sql("INSERT INTO t VALUES (1)")
            database.execute_sql("ROLLBACK")
            raise wrapped(error)
    except peewee.PeeweeException as exc:
        assert "no transaction is active" in str(exc)
        return exc
    finally:
        database.close()
    raise AssertionError("no error")


FULL = [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
    sqlite3.OperationalError("database or disk is full"),
    wrapped(sqlite3.OperationalError("database or disk is full")),
    psycopg2.errors.DiskFull("could not extend file"),
    wrapped(psycopg2.errors.DiskFull("could not extend file")),
]
PASSING = [
    OSError(errno.EIO, "Input/output error"),
    wrapped(sqlite3.OperationalError("disk I/O error")),
    wrapped(sqlite3.OperationalError("database is locked")),
    wrapped(psycopg2.OperationalError("server closed the connection unexpectedly")),
    wrapped(psycopg2.InterfaceError("connection already closed")),
]
# The board did not answer in time: the web answers 503, the supervisor retries.
BUSY = [
    wrapped(psycopg2.errors.QueryCanceled("canceling statement due to statement timeout")),
    MaxConnectionsExceeded("Max connections exceeded, timed out attempting to connect."),
    wrapped(psycopg2.OperationalError("server closed the connection unexpectedly")),
]
LASTING = [
    ValueError("a bug"),
    OSError(errno.ENOENT, "No such file or directory"),
    wrapped(sqlite3.IntegrityError("UNIQUE constraint failed: user.email")),
    wrapped(sqlite3.OperationalError("no such table: job")),
    peewee.InterfaceError("Query must be bound to a database"),
    wrapped(psycopg2.errors.UniqueViolation("duplicate key")),
]


@pytest.mark.parametrize("error", FULL, ids=repr)
def test_a_full_disk_is_full_and_passes(error: Exception) -> None:
    assert is_disk_full(error) and is_transient_error(error)


@pytest.mark.parametrize("error", PASSING, ids=repr)
def test_io_lock_and_connection_errors_pass_but_are_no_full_disk(error: Exception) -> None:
    assert is_transient_error(error) and not is_disk_full(error)


@pytest.mark.parametrize("error", BUSY, ids=repr)
def test_a_board_that_did_not_answer_in_time_is_busy_and_passes(error: Exception) -> None:
    assert is_board_busy(error) and is_transient_error(error) and not is_disk_full(error)


@pytest.mark.parametrize("error", [*FULL, *LASTING], ids=repr)
def test_a_full_disk_or_a_lasting_error_is_not_busy(error: Exception) -> None:
    assert not is_board_busy(error)


@pytest.mark.parametrize("error", LASTING, ids=repr)
def test_other_errors_last(error: Exception) -> None:
    assert not is_transient_error(error) and not is_disk_full(error)


def test_a_full_disk_behind_sqlites_own_rollback_is_seen(tmp_path: Path) -> None:
    error = behind_a_failed_rollback(tmp_path, sqlite3.OperationalError("database or disk is full"))
    assert is_disk_full(error) and is_transient_error(error)


def test_a_chained_error_is_judged_by_its_cause() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise RuntimeError("could not save") from exc
    except RuntimeError as exc:
        assert is_disk_full(exc)
