"""A live supervisor and its own runs: one it owns on the board but no longer
holds (its runner gone, its end never recorded) is closed by its reaper once
past a grace, never sooner; and runs that finish normally leave no warning
behind (no false "no longer ours")."""

from __future__ import annotations

import logging
from datetime import timedelta

from crewboard import sessionlog
from crewboard.board import records
from crewboard.board.db import write
from crewboard.board.models import Event, Job, JobStatus, Run, RunOutcome
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.home import Home
from crewboard.supervisor import reaper
from tests.support import crews
from tests.support.board_jobs import ship_log
from tests.support.crews import JobDef
from tests.support.supervisor import supervising, wait_for


@write
def lost_run(job_id: int, home: Home, supervisor_id: str, *, age_s: float) -> int:
    """What a supervisor leaves when its runner is gone and the end of the
    run could not be written: the job and run ``running``, the log open."""
    started_at = utcnow() - timedelta(seconds=age_s)
    Job.update(status=JobStatus.RUNNING).where(Job.id == job_id).execute()
    run = Run.create(
        job=job_id,
        attempt=1,
        outcome=RunOutcome.RUNNING,
        supervisor_id=supervisor_id,
        started_at=started_at,
    )
    run.log_path = str(home.run_log(run.id))
    run.save()
    with sessionlog.LogWriter(run.log_path) as writer:
        writer.append("user_message", text="Say hello.")
        writer.append("text", text="Hel")
    ship_log(home.run_log(run.id))  # as far as its supervisor shipped it
    return run.id


def outcome(run_id: int) -> str:
    return Run.get_by_id(run_id).outcome


async def test_the_reaper_closes_its_own_runs_whose_runner_is_gone(
    config: Config, home: Home, monkeypatch
) -> None:
    monkeypatch.setattr(reaper, "LOST_GRACE_S", 3.0)
    # Left out of dispatch: the test plays the part of the lost run's job.
    old_job, new_job = (
        crews.add_job(f"/sleep 30\n{n}", scheduled_at=utcnow() + timedelta(days=1)) for n in "ab"
    )
    async with supervising(config) as identity:
        old = lost_run(old_job, home, identity.supervisor_id, age_s=3600)
        new = lost_run(new_job, home, identity.supervisor_id, age_s=0)
        await wait_for(lambda: outcome(old) != RunOutcome.RUNNING, what="the old run closed")
        # Within its grace a run may still be on its way to the launcher: left be.
        assert outcome(new) == RunOutcome.RUNNING
        await wait_for(lambda: outcome(new) != RunOutcome.RUNNING, what="the new run closed")
    for run_id, job_id in ((old, old_job), (new, new_job)):
        run = Run.get_by_id(run_id)
        assert run.outcome == RunOutcome.INTERRUPTED
        assert run.error == "its runner is gone and its end was never recorded"
        # Its log ends (on PostgreSQL, the board's copy every node reads).
        if records.enabled():
            last = records.last_record(records.run_key(run_id))
        else:
            last = sessionlog.last_record(run.log_path)
        assert last is not None and last["type"] == "error" and last["seq"] == 3
        assert "its runner is gone" in last["message"]
        # Closed once, and by the failure policy: requeued, no retry used.
        events = list(Event.select().where(Event.job == job_id).order_by(Event.id))
        ended = [e for e in events if e.kind == "run_ended" and e.data["runId"] == run_id]
        assert len(ended) == 1 and "recovered from supervisor" in ended[0].message
        requeued = [e for e in events if e.kind == "requeued" and e.data["runId"] == run_id]
        assert len(requeued) == 1 and "its runner is gone" in requeued[0].message
        assert crews.job(job_id).attempts == 0


async def test_runs_that_end_normally_leave_no_warning(config: Config, home: Home, caplog) -> None:
    caplog.set_level(logging.INFO, logger="crewboard")
    ids = crews.add_crew(
        {
            f"j{n}": JobDef(f"Say hello {n}.", needs=[f"j{n - 2}"] if n >= 2 else [])
            for n in range(16)
        }
    )
    async with supervising(config):
        for job_id in ids.values():
            await wait_for(lambda j=job_id: crews.job(j).status == JobStatus.DONE, what="done")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [], [r.getMessage() for r in warnings]
    assert not [r for r in caplog.records if "no longer ours" in r.getMessage()]
    finished = [r for r in caplog.records if r.getMessage().startswith("run ")]
    assert len([r for r in finished if ": succeeded" in r.getMessage()]) == len(ids)
