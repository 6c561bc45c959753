"""On PostgreSQL a job's result is final only once the board holds it: a
runner whose supervisor freezes as its result arrives leaves no
``final_result`` in its log and the job completes once, on a peer; a result
that reached the board before the freeze is the run's result, and the peer
that rescues the run closes it as succeeded without running the job again."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from crewboard import sessionlog
from crewboard.board import db, records
from crewboard.board.models import JobStatus, Run, RunOutcome
from tests.support import crews
from tests.support.procs import gone
from tests.support.supervisor import started, supervisor_process
from tests.support.waits import wait_until

pytestmark = pytest.mark.postgres

# A heartbeat every 0.2 s and a lease of 6 s: a frozen supervisor's runner
# stops itself after 4.5 s untouched, well after the slow model answers.
LEASED = {"CREWBOARD_HEARTBEAT_S": "0.2", "CREWBOARD_LEASE_S": "6"}
ANSWER = "The shift is covered."
SLOW_JOB = f"/sleep 1.5\n{ANSWER}"


def live_run(job_id: int) -> Run:
    def probe() -> Run | None:
        live = [r for r in crews.runs(job_id) if r.outcome == RunOutcome.RUNNING and r.pid]
        return live[0] if live else None

    return wait_until(probe, 20, f"a live run of job {job_id} with a pid")  # type: ignore[return-value]


def types(log_path: str) -> list[str]:
    return [record["type"] for record in sessionlog.read_records(log_path)]


def board_types(run_id: int) -> list[str]:
    return [record["type"] for record in records.read_all(records.run_key(run_id))]


def job_done(job_id: int) -> bool:
    return crews.job(job_id).status == JobStatus.DONE


def test_a_result_that_arrives_while_its_supervisor_is_frozen_is_never_final(pg) -> None:
    config, home = pg
    env = {**LEASED, "CREWBOARD_DATABASE_URL": str(config.database_url)}
    job_id = crews.add_job(SLOW_JOB)
    with supervisor_process(home.root, env) as owner:
        started(owner)
        first = live_run(job_id)
        # Frozen while the model is still thinking: the result comes after.
        owner.popen.send_signal(signal.SIGSTOP)
        try:
            with supervisor_process(home.root, env) as peer:
                started(peer)
                wait_until(lambda: gone(first.pid), 20, "the frozen supervisor's runner to stop")
                # The runner had its result but the board never acknowledged it.
                local = types(first.log_path)
                assert local[-2:] == ["result_pending", "error"], local
                assert "final_result" not in local
                wait_until(lambda: job_done(job_id), 30, "the peer to run the job again")
                peer.stop()
        finally:
            owner.popen.send_signal(signal.SIGCONT)
        owner.stop()
    runs = crews.runs(job_id)
    assert [run.outcome for run in runs] == [RunOutcome.INTERRUPTED, RunOutcome.SUCCEEDED]
    assert ANSWER in (crews.job(job_id).result or "")
    finals = [run.id for run in runs if "final_result" in types(run.log_path)]
    assert finals == [runs[1].id]
    db.close()


@contextmanager
def board_slow_to_commit_a_pending_result() -> Iterator[None]:
    """The board takes 3 s to commit a shipment that holds a
    ``result_pending`` record: a deferred trigger sleeps at COMMIT, once the
    supervisor has sent it."""
    _commit(
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        "  PERFORM pg_sleep(3); RETURN NULL; END $$;"
        "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON log_record"
        "  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
        "  WHEN ((NEW.body::jsonb ->> 'type') = 'result_pending')"
        "  EXECUTE FUNCTION slow_commit();"
    )
    try:
        yield
    finally:
        _commit("DROP TRIGGER slow_commit ON log_record; DROP FUNCTION slow_commit();")


def committing() -> bool:
    """Whether a commit of this board is held by the trigger above."""
    cursor = db.database.execute_sql(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event = 'PgSleep' AND datname = current_database()"
    )
    return bool(cursor.fetchone()[0])


def _commit(sql: str) -> None:
    with db.database.atomic():
        db.database.execute_sql(sql)


def test_a_result_the_board_holds_is_the_runs_result_after_its_supervisor_freezes(pg) -> None:
    config, home = pg
    env = {**LEASED, "CREWBOARD_DATABASE_URL": str(config.database_url)}
    job_id = crews.add_job(SLOW_JOB)
    with board_slow_to_commit_a_pending_result(), supervisor_process(home.root, env) as owner:
        started(owner)
        first = live_run(job_id)
        # Frozen once it has sent the commit of its result's shipment: the
        # result reaches the board, and no acknowledgement reaches the runner.
        wait_until(committing, 20, "the result's shipment to be committing")
        owner.popen.send_signal(signal.SIGSTOP)
        try:
            wait_until(
                lambda: board_types(first.id)[-1:] == ["result_pending"],
                20,
                "the result in the board",
            )
            assert "final_result" not in types(first.log_path)
            with supervisor_process(home.root, env) as peer:
                started(peer)
                wait_until(
                    lambda: Run.get_by_id(first.id).outcome != RunOutcome.RUNNING,
                    30,
                    "the peer to rescue the run",
                )
                closed = Run.get_by_id(first.id)
                assert closed.outcome == RunOutcome.SUCCEEDED
                assert job_done(job_id)
                assert ANSWER in (crews.job(job_id).result or "")
                stored = records.read_all(records.run_key(first.id))
                assert [r["type"] for r in stored][-2:] == ["result_pending", "final_result"]
                assert stored[-1]["text"] == stored[-2]["text"]
                peer.stop()
        finally:
            owner.popen.send_signal(signal.SIGCONT)
        owner.stop()
    # Thawed, the owner leaves the closed run as the peer closed it.
    assert [run.id for run in crews.runs(job_id)] == [first.id]
    assert Run.get_by_id(first.id).outcome == RunOutcome.SUCCEEDED
    assert board_types(first.id)[-1] == "final_result"
    db.close()
