"""The supervisor on PostgreSQL (``CREWBOARD_DATABASE_URL``): racing claims
pass over each other's locked rows (``FOR UPDATE SKIP LOCKED``) without
ever giving a job two runs, and a crew runs to done."""

from __future__ import annotations

import threading
import time

import pytest

from crewboard.board import db, dispatch
from crewboard.board.models import JobStatus, RunOutcome
from crewboard.clock import utcnow
from tests.support import crews
from tests.support.crews import JobDef
from tests.support.supervisor import supervising, wait_for

pytestmark = pytest.mark.postgres


def test_racing_claims_on_postgresql_never_give_a_job_two_runs(pg) -> None:
    _, home = pg
    ids = crews.add_crew({f"j{i}": JobDef() for i in range(40)})
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def race(name: str) -> None:
        try:
            barrier.wait()
            while got := dispatch.claim_ready_job(f"sup-{name}", home.run_log, now=utcnow()):
                claimed[name].append(got.job_id)
                time.sleep(0.002)
        finally:
            db.close()  # this thread's connection

    threads = [threading.Thread(target=race, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claimed["a"] + claimed["b"]) == sorted(ids.values())
    assert claimed["a"] and claimed["b"]
    assert all(len(crews.runs(job_id)) == 1 for job_id in ids.values())


async def test_a_crew_runs_to_done_on_postgresql(pg) -> None:
    config, _ = pg
    ids = crews.add_crew({"a": JobDef("Find it."), "b": JobDef("Use it.", needs=["a"])})
    async with supervising(config):
        await wait_for(lambda: crews.job(ids["b"]).status == JobStatus.DONE, what="done")
    (run,) = crews.runs(ids["b"])
    assert run.outcome == RunOutcome.SUCCEEDED
    assert "Find it." in crews.job(ids["b"]).result


def test_fair_share_claims_and_crews_written_on_postgresql(pg) -> None:
    from crewboard.board import users
    from crewboard.board.models import Event

    a = users.create_user("a@example.test", None, now=utcnow()).id
    b = users.create_user("b@example.test", None, now=utcnow()).id
    a_jobs, b_jobs = crews.backlog(a, 3), crews.backlog(b, 1)
    assert crews.claim_in_turn(3, user_concurrency=2) == [a_jobs[0], b_jobs[0], a_jobs[1]]
    assert crews.claim_in_turn(3, user_concurrency=2) == []
    kinds = [e.kind for e in Event.select().where(Event.job == a_jobs[0]).order_by(Event.id)]
    assert kinds == ["created", "dispatched"]
    assert Event.get(Event.job == b_jobs[0], Event.kind == "dispatched").data["attempt"] == 1
