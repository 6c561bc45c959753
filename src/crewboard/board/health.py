"""Whether the board answers, asked in ways that never queue behind its users.

:func:`probe` reads on a connection of its own with a short timeout, so a
health check neither waits for the write lock nor for a free slot among the
worker threads that serve requests. :func:`live_supervisors` reads a board
file that may not be open in this process at all (a home about to be
restored over).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import peewee

from crewboard.board.db import database
from crewboard.board.heartbeats import STALE_AFTER_INTERVALS

PROBE_TIMEOUT_S = 0.5


def probe(timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Read one row of the board on a fresh connection; raises if the board
    cannot be read within about ``timeout_s``. Blocking: call it on a thread.

    On SQLite (WAL) a reader never waits for a writer, only for an exclusive
    lock, a recovery or a file system that hangs; on PostgreSQL a read never
    waits for row locks."""
    db = database.obj
    if db is None:
        raise RuntimeError("the board is not open in this process")
    if isinstance(db, peewee.SqliteDatabase):
        conn = _open_sqlite(Path(db.database), timeout_s, read_only=True)
        try:
            conn.execute("SELECT count(*) FROM meta").fetchone()
        finally:
            conn.close()
        return
    params = {**db.connect_params, "connect_timeout": max(2, round(timeout_s))}
    fresh = type(db)(db.database, **params)
    try:
        fresh.execute_sql("SELECT 1").fetchone()
    finally:
        fresh.close()


def _open_sqlite(path: Path, timeout_s: float, *, read_only: bool = False) -> sqlite3.Connection:
    # Never create an empty board where the real one is missing.
    uri = f"file:{quote(str(path))}?mode={'ro' if read_only else 'rw'}"
    return sqlite3.connect(uri, uri=True, timeout=timeout_s, check_same_thread=False)


def live_supervisors(board_db: Path, *, now: datetime) -> list[str]:
    """The ids of the supervisors whose heartbeat in the SQLite file
    ``board_db`` is fresh (by the rule of ``board/heartbeats.py``); none if
    the file or its table is missing."""
    if not board_db.exists():
        return []
    conn = _open_sqlite(board_db, PROBE_TIMEOUT_S * 4)
    try:
        rows = conn.execute(
            "SELECT supervisor_id, beat_at, interval_s, stopped_at FROM heartbeat"
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()
    live = []
    for supervisor_id, beat_at, interval_s, stopped_at in rows:
        beat = datetime.fromisoformat(beat_at).replace(tzinfo=UTC)
        age_s = (now - beat).total_seconds()
        if stopped_at is None and age_s <= STALE_AFTER_INTERVALS * interval_s:
            live.append(supervisor_id)
    return live
