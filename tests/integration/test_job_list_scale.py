"""The job list on a board of 10,000+ jobs: every page is read through an
index, never by scanning or sorting the job table, and the cursor still
walks each job exactly once."""

from __future__ import annotations

import logging
import random

import pytest

from crewboard.board import db
from crewboard.board.job_views import list_jobs
from crewboard.board.models import Crew, Job, JobStatus, User
from crewboard.board.users import Principal
from crewboard.clock import utcnow

JOBS = 12_000


@pytest.fixture
def board(home):
    """Two users' jobs, interleaved, in every status."""
    now = utcnow()
    alice = User.create(email="alice@example.test", created_at=now)
    bob = User.create(email="bob@example.test", created_at=now)
    crews = {
        u.id: Crew.create(template_id="t", title="t", owner=u, created_at=now) for u in (alice, bob)
    }
    rng = random.Random(7)
    rows = []
    for n in range(JOBS):
        owner = alice if n % 3 else bob
        rows.append(
            dict(
                crew=crews[owner.id].id,
                owner=owner.id,
                key=f"k{n}",
                title=f"job {n}",
                agent="assistant",
                prompt="p",
                status=rng.choice(list(JobStatus)),
                available_at=now,
                created_at=now,
                updated_at=now,
            )
        )
    with db.transaction():
        for start in range(0, len(rows), 500):
            Job.insert_many(rows[start : start + 500]).execute()
    return alice, bob


def plans_of(caplog) -> list[str]:
    plans = []
    for record in caplog.records:
        if record.name != "peewee" or not isinstance(record.msg, tuple):
            continue
        sql, params = record.msg
        if sql.startswith("SELECT") and 'FROM "job"' in sql:
            rows = db.database.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            plans.append(" / ".join(row[-1] for row in rows))
    return plans


@pytest.mark.sqlite_only("reads SQLite's EXPLAIN QUERY PLAN")
@pytest.mark.parametrize("status", [None, "done"])
@pytest.mark.parametrize("who", ["user", "admin", "admin-mine"])
def test_every_page_is_an_index_range_read(board, caplog, status, who):
    alice, _ = board
    viewer = Principal(alice.id, alice.email, "", who != "user", "local")
    caplog.set_level(logging.DEBUG, logger="peewee")
    cursor = None
    for _ in range(3):
        page, cursor = list_jobs(viewer, status, who == "admin-mine", 50, cursor)
        assert len(page) == 50
    plans = plans_of(caplog)
    assert plans
    for plan in plans:
        assert "USING INDEX" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
        assert "SCAN t1" not in plan, plan


def test_the_cursor_walks_a_large_board_exactly_once(board):
    alice, _ = board
    viewer = Principal(alice.id, alice.email, "", False, "local")
    expected = [
        j.id
        for j in Job.select(Job.id)
        .where((Job.owner == alice.id) & (Job.status != JobStatus.ARCHIVED))
        .order_by(Job.id.desc())
    ]
    seen: list[int] = []
    cursor = None
    while True:
        page, cursor = list_jobs(viewer, None, None, 200, cursor)
        seen.extend(j.id for j in page)
        if cursor is None:
            break
    assert seen == expected and len(seen) > 6000
