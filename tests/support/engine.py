"""The board engine the tests run on.

By default SQLite: each test's board is ``board.db`` in its temp home. With
``CREWBOARD_TEST_DATABASE_URL=postgresql://user@host:port`` every test that
opens a board gets a PostgreSQL database of its own instead, and servers and
commands the test starts get its URL as ``CREWBOARD_DATABASE_URL``. A test
that holds only on SQLite (it reads board.db's file, say) is marked
``@pytest.mark.sqlite_only("why")`` and skips on PostgreSQL with that reason.

A fresh database has to be cheap, or the PostgreSQL pass could not run often:

- The schema is migrated once, into a template database named after the
  content of the schema's source (:func:`schema_key`); it outlives the session,
  so the next session with the same schema starts copying at once. Each test's
  database is a ``CREATE DATABASE ... TEMPLATE`` copy of it.
- The next test's database is copied while the current test runs, and a
  finished test's database is dropped in the background too.
- Every database a session makes carries the session's number, and the
  session holds an advisory lock on that number while it lives: a later
  session drops the databases of sessions whose lock is gone (they crashed).
"""

from __future__ import annotations

import hashlib
import os
import queue
import random
import re
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SERVER = os.environ.get("CREWBOARD_TEST_DATABASE_URL", "").rstrip("/") or None

# The advisory-lock class of test sessions (``pg_advisory_lock(int, int)``);
# the second key is the session's number.
_LOCK_CLASS = 0x63726577
_SESSION_DATABASE = re.compile(r"^crewboard_s(\d+)_")


def on_postgres() -> bool:
    return SERVER is not None


def _connect(server: str, database: str = "postgres") -> Any:
    import psycopg2

    conn = psycopg2.connect(f"{server}/{database}", connect_timeout=5)
    conn.autocommit = True
    return conn


def admin_sql(sql: str, server: str | None = None) -> None:
    """Run ``sql`` outside any transaction on the server's ``postgres`` database."""
    conn = _connect(server or SERVER or "")
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def drop_database(url: str) -> None:
    server, _, name = url.rpartition("/")
    admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", server)


def schema_key() -> str:
    """A digest of what decides a migrated board's schema: the models and the
    migrations. A change to either makes a new template."""
    from crewboard.board import migrations, models

    digest = hashlib.sha256()
    for module in (models, migrations):
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()[:16]


class _Session:
    """The test session's databases on one server: the migrated template,
    a spare copy made ahead, and the drops still under way."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.number = random.getrandbits(31)
        self._made = 0
        self._lock_conn = _connect(server)
        self._lock_conn.cursor().execute(
            "SELECT pg_advisory_lock(%s, %s)", (_LOCK_CLASS, self.number)
        )
        # Copies and drops on two threads, so a slow drop (PostgreSQL may
        # checkpoint) never holds up the next test's copy.
        self._copies = _Worker("test-database-copies")
        self._drops = _Worker("test-database-drops")
        self._drop_leftovers()
        self.template = self._template()
        self._spare = self._copy_later()

    def _name(self, what: str) -> str:
        self._made += 1
        return f"crewboard_s{self.number}_{what}{self._made}"

    def _later(self, fn: Callable[[], str]) -> Future[str]:
        future: Future[str] = Future()

        def job() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self._copies.put(job)
        return future

    def _sql(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        conn = _connect(self.server)
        try:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
        finally:
            conn.close()

    def _drop_leftovers(self) -> None:
        """Drop the databases of earlier sessions that ended without dropping
        them: those whose session no longer holds its advisory lock."""
        names = [row[0] for row in self._sql("SELECT datname FROM pg_database")]
        owners: dict[int, list[str]] = {}
        for name in names:
            if match := _SESSION_DATABASE.match(name):
                owners.setdefault(int(match.group(1)), []).append(name)
        cursor = self._lock_conn.cursor()
        for number, owned in owners.items():
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", (_LOCK_CLASS, number))
            if not cursor.fetchone()[0]:
                continue  # a live session's databases
            try:
                for name in owned:
                    self._sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_CLASS, number))

    def _template(self) -> str:
        """The migrated template for this schema, made if no session made it.
        It is built under a session name and renamed when complete, so no
        session copies a half-migrated one."""
        from crewboard.board import db

        final = f"crewboard_template_{schema_key()}"
        if self._sql("SELECT 1 FROM pg_database WHERE datname = %s", (final,)):
            return final
        building = self._name("template")
        self._sql(f"CREATE DATABASE {building}")
        db.connect(url=f"{self.server}/{building}")
        db.close()
        try:
            self._sql(f"ALTER DATABASE {building} RENAME TO {final}")
        except Exception:
            # Another session finished the same template first.
            self._sql(f"DROP DATABASE IF EXISTS {building} WITH (FORCE)")
        return final

    def _copy(self) -> str:
        name = self._name("test")
        self._sql(f"CREATE DATABASE {name} TEMPLATE {self.template}")
        return f"{self.server}/{name}"

    def _copy_later(self) -> Future[str]:
        return self._later(self._copy)

    def take(self) -> str:
        """A fresh migrated database's URL; the next one starts copying."""
        url = self._spare.result()
        self._spare = self._copy_later()
        return url

    def drop_later(self, url: str) -> None:
        self._drops.put(lambda: drop_database(url))

    def close(self) -> None:
        """Drop the spare and wait for every drop; release the session's lock."""
        self._copies.finish()
        if self._spare.exception() is None:
            self.drop_later(self._spare.result())
        self._drops.finish()
        self._lock_conn.close()


class _Worker:
    """A thread running jobs in the order they were put."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def put(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def finish(self) -> None:
        """Run the jobs already put, then stop."""
        self._jobs.put(None)
        self._thread.join()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception as exc:  # a drop that failed is a later session's leftover
                print(f"test databases: {exc}", file=sys.stderr)


_sessions: dict[str, _Session] = {}
_current: str | None = None
_asked = False
_shared: str | None = None


def fresh_database(server: str) -> str:
    """A fresh migrated database on ``server``; its URL. Give it back with
    :func:`release`."""
    if server not in _sessions:
        _sessions[server] = _Session(server)
    return _sessions[server].take()


def release(url: str) -> None:
    """Drop a database :func:`fresh_database` made (in the background)."""
    _sessions[url.rpartition("/")[0]].drop_later(url)


def database_url() -> str | None:
    """This test's board URL on PostgreSQL (a fresh migrated database, taken
    on first call), or None on SQLite. Either way the test counts as one that
    asked for a board (:func:`asked_for_board`)."""
    global _current, _asked
    _asked = True
    if _shared is not None:
        return _shared
    if SERVER is not None and _current is None:
        _current = fresh_database(SERVER)
    return _current


@contextmanager
def shared_database() -> Iterator[str | None]:
    """On PostgreSQL, a fresh migrated database for a board that outlives one
    test (a module's or the session's), dropped when the block ends; None on
    SQLite. The caller passes it on to what it starts."""
    if SERVER is None:
        yield None
        return
    url = fresh_database(SERVER)
    try:
        yield url
    finally:
        release(url)


@contextmanager
def shared_board() -> Iterator[str | None]:
    """:func:`shared_database`, which is also every test's board
    (:func:`database_url`) while the block is open: for a module-scoped
    fixture whose tests work on the board it made."""
    global _shared
    with shared_database() as url:
        _shared = url
        try:
            yield url
        finally:
            _shared = None


def asked_for_board() -> bool:
    """Whether the running test asked for a board (on either engine)."""
    return _asked


def end_test() -> None:
    """Give back the database the test took, if it took one."""
    global _current, _asked
    _asked = False
    if _current is not None:
        url, _current = _current, None
        release(url)


def end_session() -> None:
    """Drop the spare databases and wait for every drop."""
    while _sessions:
        _sessions.popitem()[1].close()
