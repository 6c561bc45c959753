"""Recovery of runs left ``running`` with no runner behind them, closed from
what their logs say, their jobs moved on as if the run had ended (see
:func:`crewboard.board.dispatch.finish_run`):

- a peer's runs its supervisor no longer holds (:func:`recover_orphans`): a
  run is rescued once its lease has expired by the board's clock
  (``board/leases.py``) — by then its supervisor has stopped its runner, and
  the runner has stopped itself — or at once when its supervisor has
  stopped, or when it ran under this very host identity (the same boot and
  pid namespace) and its pid is gone (a restart). A hostname alone proves
  nothing: containers share one and compare pids of other namespaces;
- a live supervisor's own runs whose runner is gone but whose end was never
  recorded (:func:`recover_lost_runs`): the supervisor names the runs it still
  supervises, and the others it owns, once past a grace, are closed.

A recovered run's ``run_ended`` event names the supervisor it was recovered
from, and its log is closed with a terminal record if it had none.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from crewboard import sessionlog
from crewboard.board import records
from crewboard.board.db import write
from crewboard.board.dispatch import close_run, run_with_job
from crewboard.board.heartbeats import is_alive
from crewboard.board.leases import board_now, lease_lapsed
from crewboard.board.models import Heartbeat, Run, RunOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovered:
    """A run closed by recovery, and what became of its job."""

    run_id: int
    job_id: int
    supervisor_id: str
    outcome: RunOutcome
    job_status: str


@dataclass(frozen=True)
class Rescue:
    """A peer's live run this supervisor may close, and why."""

    run_id: int
    owner: str
    why: str
    # Rescued because its lease passed: checked again, under a row lock, as it is closed.
    lease_lapsed: bool


def _gone_here(beat: Heartbeat, this_host_identity: str, pid_alive: Callable[[int], bool]) -> bool:
    """The beat's supervisor ran under this host identity and its pid is gone
    (or is now this very process)."""
    return beat.host_identity == this_host_identity and (
        beat.pid == os.getpid() or not pid_alive(beat.pid)
    )


def _why_rescuable(
    run: Run,
    beat: Heartbeat | None,
    this_host_identity: str,
    pid_alive: Callable[[int], bool],
    now: datetime,
) -> str | None:
    if run.lease_expires_at is not None and run.lease_expires_at <= now:
        return _LEASE_EXPIRED
    if beat is not None and beat.stopped_at is not None:
        return _SUPERVISOR_GONE  # it stopped its runners before it said so
    if beat is not None and _gone_here(beat, this_host_identity, pid_alive):
        return _SUPERVISOR_GONE
    if run.lease_expires_at is None and (beat is None or not is_alive(beat, now=now)):
        return _SUPERVISOR_GONE  # a run from before leases
    return None


def rescuable_runs(
    this_supervisor_id: str,
    this_host_identity: str,
    pid_alive: Callable[[int], bool],
    *,
    now: datetime,
) -> list[Rescue]:
    """Other supervisors' live runs this one may close (see the module
    docstring); never one whose lease still holds and whose supervisor may
    still be running it."""
    runs = list(
        Run.select(Run.id, Run.supervisor_id, Run.lease_expires_at).where(
            (Run.outcome == RunOutcome.RUNNING) & (Run.supervisor_id != this_supervisor_id)
        )
    )
    if not runs:
        return []
    owners = {run.supervisor_id for run in runs}
    beats = {
        row.supervisor_id: row
        for row in Heartbeat.select().where(Heartbeat.supervisor_id.in_(owners))
    }
    rescues = []
    for run in runs:
        why = _why_rescuable(run, beats.get(run.supervisor_id), this_host_identity, pid_alive, now)
        if why is not None:
            rescues.append(Rescue(run.id, run.supervisor_id, why, why == _LEASE_EXPIRED))
    return rescues


# Why a recovered run ended, when its log does not say.
_SUPERVISOR_GONE = "its supervisor went away"
_LEASE_EXPIRED = "its supervisor's lease on it expired"
_END_UNRECORDED = "its runner is gone and its end was never recorded"


def _last_record(log_path: str | None) -> sessionlog.Record | None:
    """An orphaned run's last record: on PostgreSQL the board's copy (its
    host may be gone), else the file."""
    key = records.log_key(log_path) if log_path and records.enabled() else None
    if key is not None:
        return records.last_record(key)
    return sessionlog.last_record(log_path) if log_path else None


def _orphan_outcome(
    last: sessionlog.Record | None, why: str
) -> tuple[RunOutcome, str | None, str | None]:
    """How an orphaned run ended, from its log's last record. A result the
    runner was settling with the board (``result_pending``, see
    ``runner/settle.py``) is its result: the board holds it."""
    if last is not None and last.get("type") in ("final_result", sessionlog.RESULT_PENDING):
        return RunOutcome.SUCCEEDED, None, str(last.get("text") or "")
    if last is not None and last.get("type") == "blocked":
        return RunOutcome.BLOCKED, str(last.get("reason") or "") or None, None
    return RunOutcome.INTERRUPTED, why, None


def _close_orphan_log(log_path: str, message: str) -> None:
    """End an orphan's log with a terminal record: on PostgreSQL in the
    board, where every node reads it (the file is on its own host), else in
    the file."""
    key = records.log_key(log_path) if records.enabled() else None
    if key is not None:
        records.ensure_terminal(key, message)
    else:
        sessionlog.ensure_terminal(log_path, message)


def _settle_orphan_log(log_path: str, pending: sessionlog.Record) -> None:
    """End the log of an orphan whose last record is its pending result with
    the ``final_result`` the runner would have written: in the board on
    PostgreSQL, else in the file."""
    key = records.log_key(log_path) if records.enabled() else None
    if key is not None:
        records.ensure_final(key, pending)
    else:
        with sessionlog.LogWriter(log_path) as writer:
            writer.append_record(records.final_from_pending(pending))


@write
def _recover_run(
    run_id: int, owner: str, why: str, *, now: datetime | None, if_lease_lapsed: bool = False
) -> Recovered | None:
    now = now or board_now()
    if if_lease_lapsed and not lease_lapsed(run_id, now=now):
        return None  # renewed meanwhile: its supervisor holds it again
    run = run_with_job(run_id)
    if run is None or run.outcome != RunOutcome.RUNNING or run.supervisor_id != owner:
        return None
    last = _last_record(run.log_path)
    outcome, error, result = _orphan_outcome(last, why)
    if run.log_path and outcome == RunOutcome.INTERRUPTED:
        _close_orphan_log(run.log_path, f"run interrupted: {why}")
    if run.log_path and last is not None and last.get("type") == sessionlog.RESULT_PENDING:
        _settle_orphan_log(run.log_path, last)
    finished = close_run(
        run,
        outcome,
        exit_code=None,
        error=error,
        result=result,
        artifact=run.artifact,
        now=now,
        owner=owner,
        how=f" (recovered from supervisor {owner})",
    )
    if finished is None:
        return None
    return Recovered(run.id, run.job_id, owner, outcome, finished.job_status)


def _recover_each(rescues: list[Rescue], *, now: datetime | None) -> list[Recovered]:
    """Close each rescue's run still live, one transaction per run."""
    recovered = []
    for rescue in rescues:
        closed = _recover_run(
            rescue.run_id,
            rescue.owner,
            rescue.why,
            now=now,
            if_lease_lapsed=rescue.lease_lapsed,
        )
        if closed is not None:
            log.info(
                "recovered run %s of job %s from supervisor %s (%s): %s",
                closed.run_id,
                closed.job_id,
                closed.supervisor_id,
                rescue.why,
                closed.outcome.value,
            )
            recovered.append(closed)
    return recovered


def recover_orphans(
    this_supervisor_id: str,
    this_host_identity: str,
    pid_alive: Callable[[int], bool],
    *,
    now: datetime | None = None,
) -> list[Recovered]:
    """Close every peer's run this supervisor may rescue (see
    :func:`rescuable_runs`; by the board's clock unless ``now`` is given):
    ``succeeded`` if its log ends in a ``final_result``, ``blocked`` if in
    the agent's block, else ``interrupted``; and move its job on as
    :func:`finish_run` does. Never touches a run whose lease still holds
    while its supervisor may be running it. One transaction per run."""
    clock = now or board_now()
    rescues = rescuable_runs(this_supervisor_id, this_host_identity, pid_alive, now=clock)
    return _recover_each(rescues, now=now)


def own_live_runs(supervisor_id: str, *, started_before: datetime) -> list[int]:
    """The runs the board shows ``running`` under ``supervisor_id`` that
    started before ``started_before``."""
    rows = Run.select(Run.id).where(
        (Run.outcome == RunOutcome.RUNNING)
        & (Run.supervisor_id == supervisor_id)
        & (Run.started_at < started_before)
    )
    return [row.id for row in rows]


def recover_lost_runs(
    supervisor_id: str, run_ids: list[int], *, now: datetime | None = None
) -> list[Recovered]:
    """Close runs of a live supervisor that it no longer supervises (their
    runner gone, their end never recorded): of :func:`own_live_runs`, those
    its launcher does not hold. Closed as :func:`recover_orphans` closes
    them, one transaction per run; a run closed meanwhile is left as it is."""
    rescues = [Rescue(run_id, supervisor_id, _END_UNRECORDED, False) for run_id in run_ids]
    return _recover_each(rescues, now=now)
