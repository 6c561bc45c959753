"""The board engine the tests run on.

By default SQLite: each test's board is ``board.db`` in its temp home. With
``CREWBOARD_TEST_DATABASE_URL=postgresql://user@host:port`` every test that
opens a board gets a PostgreSQL database of its own instead, made on first
use (by :func:`database_url`) and dropped when the test ends; servers and
commands the test starts get its URL as ``CREWBOARD_DATABASE_URL``. A test
that holds only on SQLite (it reads board.db's file, say) is marked
``@pytest.mark.sqlite_only("why")`` and skips on PostgreSQL with that reason.
"""

from __future__ import annotations

import os
import uuid

SERVER = os.environ.get("CREWBOARD_TEST_DATABASE_URL", "").rstrip("/") or None

_current: str | None = None


def on_postgres() -> bool:
    return SERVER is not None


def admin_sql(sql: str, server: str | None = None) -> None:
    """Run ``sql`` outside any transaction on the server's ``postgres`` database."""
    import psycopg2

    conn = psycopg2.connect(f"{server or SERVER}/postgres", connect_timeout=3)
    conn.autocommit = True
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def new_database(server: str) -> str:
    """A fresh, empty database on ``server``; its URL."""
    name = f"crewboard_test_{uuid.uuid4().hex[:12]}"
    admin_sql(f"CREATE DATABASE {name}", server)
    return f"{server}/{name}"


def drop_database(url: str) -> None:
    server, _, name = url.rpartition("/")
    admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", server)


def database_url() -> str | None:
    """This test's board URL on PostgreSQL (made on first call), or None on SQLite."""
    global _current
    if SERVER is not None and _current is None:
        _current = new_database(SERVER)
    return _current


def end_test() -> None:
    """Drop the database the test made, if it made one."""
    global _current
    if _current is not None:
        url, _current = _current, None
        drop_database(url)
