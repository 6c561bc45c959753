"""board.db under concurrent writers: processes queue for the write lock
instead of failing, and async callers never block their event loop."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import trio

from crewboard.board import db
from crewboard.board.models import ApiToken, User
from crewboard.clock import utcnow
from crewboard.home import Home

WRITER = textwrap.dedent(
    """
    import sys
    from crewboard.board import db, users
    from crewboard.board.db import write
    from crewboard.board.models import User
    from crewboard.clock import utcnow
    import time

    db.connect(sys.argv[1])
    owner = users.get_user_by_email("owner@example.test")

    @write
    def slow_write(i):
        # Read, then write: the pattern a deferred transaction cannot upgrade safely.
        users.list_tokens(owner.id)
        users.create_token.__wrapped__(owner.id, f"{sys.argv[2]}-{i}", now=utcnow())
        time.sleep(0.002)  # hold the write lock a little, as real transactions do

    for i in range(int(sys.argv[3])):
        slow_write(i)
    print("ok")
    """
)


@pytest.mark.sqlite_only("SQLite's file lock")
def test_two_processes_writing_at_once_never_see_a_locked_database(home, config):
    from crewboard.board import users

    users.create_user("owner@example.test", None, now=utcnow())
    n = 150
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(Home(config.home).board_db), name, str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b", "c")
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err
        assert out.strip() == "ok"
    assert ApiToken.select().count() == 3 * n


async def test_board_calls_do_not_block_the_event_loop(home):
    def query_that_needs_the_loop():
        # Mid-query, ask the event loop to run something: it can answer only
        # if the query holds a worker thread, not the loop.
        answer = trio.from_thread.run_sync(lambda: "the loop answered")
        return answer, User.select().count()

    with trio.fail_after(30):
        assert await db.call(query_that_needs_the_loop) == ("the loop answered", 0)


def test_schema_version_is_recorded_and_reopening_is_idempotent(home, config):
    from crewboard.board.migrations import SCHEMA_VERSION, current_version

    assert current_version(db.database.obj) == SCHEMA_VERSION
    db.connect(Home(config.home).board_db)
    assert current_version(db.database.obj) == SCHEMA_VERSION
    pragmas = {
        name: db.database.execute_sql(f"PRAGMA {name}").fetchone()[0]
        for name in ("journal_mode", "foreign_keys", "busy_timeout")
    }
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 15000}


def test_ids_are_never_reused_after_a_delete(home):
    """Ids name log files, artifact folders and feed positions: a deleted last
    row must not hand its id to the next one."""
    from crewboard.board import users

    first = users.create_user("first@example.test", None, now=utcnow())
    first.delete_instance()
    second = users.create_user("second@example.test", None, now=utcnow())
    assert second.id > first.id


def test_a_job_can_never_have_two_live_runs(home):
    """Enforced by the board itself, whatever a caller does."""
    import peewee
    import pytest

    from crewboard.board.models import Run
    from crewboard.clock import utcnow
    from tests.support import crews

    job_id = crews.add_job()
    now = utcnow()
    Run.create(job=job_id, supervisor_id="a", started_at=now)
    with pytest.raises(peewee.IntegrityError), db.database.atomic():
        Run.create(job=job_id, supervisor_id="b", started_at=now)
    Run.update(outcome="succeeded").execute()
    Run.create(job=job_id, supervisor_id="b", started_at=now)  # a later attempt is fine
