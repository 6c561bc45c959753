"""On PostgreSQL a job's result is final only once the board holds it: a
runner whose supervisor freezes as its result arrives leaves no
``final_result`` in its log and the job completes once, on a peer; a result
that reached the board before the freeze is the run's result, and the peer
that rescues the run closes it as succeeded without running the job again."""

from __future__ import annotations

import signal

import pytest

from crewboard import sessionlog
from crewboard.board import db, records
from crewboard.board.models import JobStatus, Run, RunOutcome
from crewboard.supervisor.launcher import ack_path
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


def test_a_result_the_board_holds_is_the_runs_result_after_its_supervisor_freezes(pg) -> None:
    config, home = pg
    env = {**LEASED, "CREWBOARD_DATABASE_URL": str(config.database_url)}
    job_id = crews.add_job(SLOW_JOB)
    # The first run of a fresh board is run 1. Its acknowledgements cannot be
    # written (a directory is where they go): its result reaches the board,
    # and the runner still waits, as it would had its supervisor frozen
    # between the shipment and the acknowledgement.
    ack_path(home.run_log(1)).mkdir(parents=True)
    with supervisor_process(home.root, env) as owner:
        started(owner)
        first = live_run(job_id)
        assert first.id == 1
        wait_until(
            lambda: board_types(first.id)[-1:] == ["result_pending"], 20, "the result in the board"
        )
        owner.popen.send_signal(signal.SIGSTOP)
        try:
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
