"""The supervisor's board transitions on a real board.db: racing claims,
the failure policy, child promotion and orphan recovery."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from crewboard import sessionlog
from crewboard.board import dispatch, leases, records, recovery
from crewboard.board.heartbeats import beat
from crewboard.board.models import Job, JobStatus, Run, RunOutcome
from crewboard.clock import utcnow
from crewboard.home import Home
from crewboard.supervisor.heartbeat import host_identity
from crewboard.wakeup import wake_supervisor
from tests.support import crews
from tests.support.board_jobs import ship_log
from tests.support.crews import JobDef

HOST = socket.gethostname()


def claim(home: Home, supervisor_id: str = "sup-a", now=None) -> dispatch.Claim | None:
    return dispatch.claim_ready_job(supervisor_id, home.run_log, now=now or utcnow())


def write_log(path: Path, *lines: tuple[str, dict]) -> None:
    with sessionlog.LogWriter(path) as writer:
        for kind, fields in lines:
            writer.append(kind, **fields)


def test_two_supervisors_racing_never_give_a_job_two_runs(home: Home) -> None:
    ids = crews.add_crew({f"j{i}": JobDef() for i in range(40)})
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def race(name: str) -> None:
        barrier.wait()
        while (got := claim(home, f"sup-{name}")) is not None:
            claimed[name].append(got.job_id)
            time.sleep(0.002)  # a dispatcher hands each claim to its launcher

    threads = [threading.Thread(target=race, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    everything = claimed["a"] + claimed["b"]
    assert sorted(everything) == sorted(ids.values())  # each job claimed exactly once
    assert claimed["a"] and claimed["b"]  # both really raced
    for job_id in ids.values():
        assert len(crews.runs(job_id)) == 1
        assert crews.job(job_id).status == JobStatus.RUNNING


def test_claims_go_oldest_first_and_skip_jobs_not_yet_due(home: Home) -> None:
    later = crews.add_job("later", extra={"available_at": utcnow() + timedelta(minutes=5)})
    first, second = crews.add_job("first"), crews.add_job("second")
    now = utcnow()
    assert claim(home, now=now).job_id == first
    assert claim(home, now=now).job_id == second
    assert claim(home, now=now) is None
    assert dispatch.next_due_at(now=now) == crews.job(later).available_at
    assert claim(home, now=now + timedelta(minutes=6)).job_id == later


def test_a_claim_composes_the_prompt_and_names_the_log(home: Home) -> None:
    ids = crews.add_crew({"a": JobDef("Find facts."), "b": JobDef("Use them.", needs=["a"])})
    run_a = claim(home)
    dispatch.finish_run(
        run_a.run_id, RunOutcome.SUCCEEDED, exit_code=0, result="FACT: 42", now=utcnow()
    )
    assert crews.job(ids["b"]).status == JobStatus.READY  # promoted in the same transaction
    run_b = claim(home)
    assert run_b.job_id == ids["b"] and run_b.attempt == 1
    assert run_b.prompt.startswith("Use them.") and "FACT: 42" in run_b.prompt
    assert run_b.log_path == home.run_log(run_b.run_id)
    assert Run.get_by_id(run_b.run_id).log_path == str(run_b.log_path)


def test_a_child_waits_for_all_parents_and_its_scheduled_time(home: Home) -> None:
    soon = utcnow() + timedelta(minutes=10)
    ids = crews.add_crew(
        {
            "a": JobDef(),
            "b": JobDef(),
            "c": JobDef(needs=["a", "b"]),
            "d": JobDef(needs=["a"], scheduled_at=soon),
        }
    )
    first = claim(home)
    dispatch.finish_run(first.run_id, RunOutcome.SUCCEEDED, result="a's result", now=utcnow())
    assert crews.job(ids["c"]).status == JobStatus.WAITING  # b is not done yet
    assert crews.job(ids["d"]).status == JobStatus.WAITING  # not its time yet
    second = claim(home)
    finished = dispatch.finish_run(
        second.run_id, RunOutcome.SUCCEEDED, result="b's result", now=utcnow()
    )
    assert finished.promoted == (ids["c"],)
    assert dispatch.promote_waiting(now=utcnow()) == []
    assert dispatch.promote_waiting(now=soon) == [ids["d"]]


def test_a_lost_race_to_finish_is_a_no_op(home: Home) -> None:
    crews.add_job()
    got = claim(home)
    assert (
        dispatch.finish_run(got.run_id, RunOutcome.SUCCEEDED, result="once", now=utcnow())
        is not None
    )
    assert dispatch.finish_run(got.run_id, RunOutcome.FAILED, error="twice", now=utcnow()) is None
    run = Run.get_by_id(got.run_id)
    assert run.outcome == RunOutcome.SUCCEEDED and run.error is None


def test_interruptions_requeue_for_free_three_times_then_block(home: Home) -> None:
    job_id = crews.add_job(retries=0)
    for n in (1, 2, 3):
        got = claim(home)
        finished = dispatch.finish_run(
            got.run_id, RunOutcome.INTERRUPTED, error="drained", now=utcnow()
        )
        assert finished.job_status == JobStatus.READY
        assert crews.job(job_id).interruptions == n and crews.job(job_id).attempts == 0
    got = claim(home)
    finished = dispatch.finish_run(
        got.run_id, RunOutcome.INTERRUPTED, error="drained", now=utcnow()
    )
    assert finished.job_status == JobStatus.BLOCKED
    assert "crash loop" in crews.job(job_id).blocked_reason


def test_a_run_that_ends_otherwise_resets_the_interruption_count(home: Home) -> None:
    job_id = crews.add_job(retries=2)
    dispatch.finish_run(claim(home).run_id, RunOutcome.INTERRUPTED, now=utcnow())
    dispatch.finish_run(claim(home).run_id, RunOutcome.CRASHED, error="boom", now=utcnow())
    assert crews.job(job_id).interruptions == 0


def test_a_failure_with_a_pending_cancel_blocks_as_cancelled(home: Home) -> None:
    job_id = crews.add_job(retries=5)
    got = claim(home)
    crews.request_cancel(job_id)
    assert dispatch.runs_to_cancel("sup-a") == [got.run_id]
    assert dispatch.runs_to_cancel("sup-b") == []
    dispatch.finish_run(got.run_id, RunOutcome.INTERRUPTED, now=utcnow())
    job = crews.job(job_id)
    assert job.status == JobStatus.BLOCKED and job.blocked_reason.startswith("cancelled")
    assert not job.cancel_requested


def _orphan(home: Home, supervisor_id: str, *lines: tuple[str, dict]) -> dispatch.Claim:
    crews.add_job()
    got = claim(home, supervisor_id)
    write_log(got.log_path, ("user_message", {"text": "hi"}), *lines)
    ship_log(Path(got.log_path))
    return got


# This process's host identity, and another machine's (or container's).
HERE = host_identity()
ELSEWHERE = "another-boot:4026531836"


def _beat(
    supervisor_id: str,
    *,
    host: str = "elsewhere",
    identity: str = ELSEWHERE,
    pid: int = 1,
    age_s: float = 0,
) -> None:
    now = utcnow()
    beat(
        supervisor_id,
        pid=pid,
        host=host,
        host_identity=identity,
        version="test",
        started_at=now - timedelta(minutes=1),
        interval_s=0.2,
        running=1,
        capacity=4,
        now=now - timedelta(seconds=age_s),
    )


def past_the_lease() -> datetime:
    """A moment after every lease a claim just took has expired."""
    return utcnow() + timedelta(seconds=leases.DEFAULT_LEASE_S + 1)


def test_recovery_closes_a_dead_supervisors_runs_by_their_logs(home: Home) -> None:
    _beat("dead", age_s=60)
    answered = _orphan(home, "dead", ("final_result", {"text": "made it", "agentName": "x"}))
    halfway = _orphan(home, "dead", ("text", {"text": "half"}))
    recovered = recovery.recover_orphans("me", HERE, lambda pid: True, now=past_the_lease())
    assert {r.run_id: r.outcome for r in recovered} == {
        answered.run_id: RunOutcome.SUCCEEDED,
        halfway.run_id: RunOutcome.INTERRUPTED,
    }
    assert crews.job(answered.job_id).status == JobStatus.DONE
    assert crews.job(answered.job_id).result == "made it"
    assert crews.job(halfway.job_id).status == JobStatus.READY  # requeued, no retry used
    assert crews.job(halfway.job_id).attempts == 0
    # Its log now ends, so anyone following it stops (on PostgreSQL, the
    # board's copy every node follows).
    if records.enabled():
        last = records.last_record(records.run_key(halfway.run_id))
    else:
        last = sessionlog.last_record(halfway.log_path)
    assert last["type"] == "error"


def test_a_stale_heartbeat_is_not_enough_while_the_runs_lease_holds(home: Home) -> None:
    # Its supervisor may only be paused, its runner still going: the run is
    # rescued once its lease has expired, not before.
    _beat("paused", age_s=60)
    got = _orphan(home, "paused")
    assert recovery.recover_orphans("me", HERE, lambda pid: True, now=utcnow()) == []
    assert Run.get_by_id(got.run_id).outcome == RunOutcome.RUNNING
    (recovered,) = recovery.recover_orphans("me", HERE, lambda pid: True, now=past_the_lease())
    assert recovered.run_id == got.run_id


def test_recovery_never_touches_a_live_supervisors_run(home: Home) -> None:
    _beat("alive-elsewhere", host="elsewhere", pid=1)
    _beat("alive-here", host=HOST, identity=HERE, pid=os.getppid())
    mine = [_orphan(home, "alive-elsewhere"), _orphan(home, "alive-here")]
    assert recovery.recover_orphans("me", HERE, lambda pid: pid == os.getppid(), now=utcnow()) == []
    assert all(Run.get_by_id(c.run_id).outcome == RunOutcome.RUNNING for c in mine)


def test_recovery_on_the_same_host_does_not_wait_for_the_lease(home: Home) -> None:
    _beat("died-just-now", host=HOST, identity=HERE, pid=999_999)
    got = _orphan(home, "died-just-now")
    (recovered,) = recovery.recover_orphans("me", HERE, lambda pid: pid != 999_999, now=utcnow())
    assert recovered.run_id == got.run_id and recovered.outcome == RunOutcome.INTERRUPTED


def test_a_peer_with_the_same_hostname_in_another_container_is_not_judged_by_pid(
    home: Home,
) -> None:
    # Same hostname, another pid namespace: its pid means nothing here.
    _beat("next-container", host=HOST, identity=f"{HERE}-other-namespace", pid=999_999)
    got = _orphan(home, "next-container")
    assert recovery.recover_orphans("me", HERE, lambda pid: pid != 999_999, now=utcnow()) == []
    assert Run.get_by_id(got.run_id).outcome == RunOutcome.RUNNING


def test_a_renewal_extends_only_leases_that_still_hold(home: Home) -> None:
    held = _orphan(home, "sup")
    lapsed = _orphan(home, "sup")
    _orphan(home, "peer")
    Run.update(lease_expires_at=utcnow() - timedelta(seconds=1)).where(
        Run.id == lapsed.run_id
    ).execute()
    assert leases.renew("sup", 30.0, now=utcnow()) == {held.run_id}
    # Renewed for 30 s: still held past the claim's lease.
    assert leases.renew("sup", 30.0, now=past_the_lease()) == {held.run_id}
    (rescued,) = recovery.recover_orphans("me", HERE, lambda pid: True, now=utcnow())
    assert rescued.run_id == lapsed.run_id


def test_a_run_closed_under_a_stalled_supervisor_is_reported_lost(home: Home) -> None:
    _beat("stalled", age_s=60)
    got = _orphan(home, "stalled")
    recovery.recover_orphans("me", HERE, lambda pid: True, now=past_the_lease())
    assert dispatch.runs_not_live("stalled", [got.run_id]) == [got.run_id]
    assert dispatch.set_run_pid(got.run_id, 1234, now=utcnow()) is False


@pytest.mark.parametrize("outcome", [RunOutcome.FAILED, RunOutcome.CRASHED, RunOutcome.TIMED_OUT])
def test_failures_back_off_then_block(home: Home, outcome: RunOutcome) -> None:
    job_id = crews.add_job(retries=2)
    for failures in (1, 2):
        now = utcnow()
        got = claim(home, now=now)
        finished = dispatch.finish_run(got.run_id, outcome, error="nope", now=now)
        assert finished.job_status == JobStatus.READY
        assert finished.available_at == now + timedelta(seconds=2**failures)
        assert claim(home, now=now) is None  # not before the backoff ends
        # Let the backoff pass.
        Job.update(available_at=now).where(Job.id == job_id).execute()
    got = claim(home)
    finished = dispatch.finish_run(got.run_id, outcome, error="nope", now=utcnow())
    assert finished.job_status == JobStatus.BLOCKED
    assert "nope" in crews.job(job_id).blocked_reason


def test_waking_a_supervisor_that_is_not_there_never_raises(tmp_path: Path) -> None:
    home = Home(tmp_path / "home").ensure()
    assert wake_supervisor(home) is False  # no socket at all
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(home.wake_socket))
    stale.close()  # a dead supervisor's socket file
    assert wake_supervisor(home.root) is False
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    home.wake_socket.unlink()
    listening.bind(str(home.wake_socket))
    try:
        assert wake_supervisor(home) is True
        assert listening.recv(64)
    finally:
        listening.close()
