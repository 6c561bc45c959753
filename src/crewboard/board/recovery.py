"""Recovery of runs left ``running`` with no runner behind them, closed from
what their logs say, their jobs moved on as if the run had ended (see
:func:`crewboard.board.dispatch.finish_run`):

- the runs of a supervisor that is no longer alive (:func:`recover_orphans`).
  A supervisor is alive while its heartbeat is fresh — and, on this host,
  while its pid exists; another live supervisor's runs are never touched;
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


def dead_supervisors(
    this_supervisor_id: str, this_host: str, pid_alive: Callable[[int], bool], *, now: datetime
) -> set[str]:
    """Supervisors owning live runs that are not themselves alive: their
    heartbeat is stale or stopped (or missing), or they ran on this host and
    their pid is gone (or is now this very process)."""
    owners = {
        row.supervisor_id
        for row in Run.select(Run.supervisor_id).where(Run.outcome == RunOutcome.RUNNING).distinct()
    }
    owners.discard(this_supervisor_id)
    if not owners:
        return set()
    beats = {
        row.supervisor_id: row
        for row in Heartbeat.select().where(Heartbeat.supervisor_id.in_(owners))
    }
    dead = set()
    for owner in owners:
        beat = beats.get(owner)
        if (
            beat is None
            or not is_alive(beat, now=now)
            or (beat.host == this_host and (beat.pid == os.getpid() or not pid_alive(beat.pid)))
        ):
            dead.add(owner)
    return dead


# Why a recovered run ended, when its log does not say.
_SUPERVISOR_GONE = "its supervisor went away"
_END_UNRECORDED = "its runner is gone and its end was never recorded"


def _orphan_outcome(log_path: str | None, why: str) -> tuple[RunOutcome, str | None, str | None]:
    """How an orphaned run ended, from the last record of its log: on
    PostgreSQL the board's copy (its host may be gone), else the file."""
    key = records.log_key(log_path) if log_path and records.enabled() else None
    if key is not None:
        last = records.last_record(key)
    else:
        last = sessionlog.last_record(log_path) if log_path else None
    if last is not None and last.get("type") == "final_result":
        return RunOutcome.SUCCEEDED, None, str(last.get("text") or "")
    if last is not None and last.get("type") == "blocked":
        return RunOutcome.BLOCKED, str(last.get("reason") or "") or None, None
    return RunOutcome.INTERRUPTED, why, None


@write
def _recover_run(run_id: int, owner: str, why: str, *, now: datetime) -> Recovered | None:
    run = run_with_job(run_id)
    if run is None or run.outcome != RunOutcome.RUNNING or run.supervisor_id != owner:
        return None
    outcome, error, result = _orphan_outcome(run.log_path, why)
    if run.log_path and outcome == RunOutcome.INTERRUPTED:
        sessionlog.ensure_terminal(run.log_path, f"run interrupted: {why}")
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


def _recover_each(runs: list[tuple[int, str]], why: str, *, now: datetime) -> list[Recovered]:
    """Close each ``(run_id, owner)`` still live, one transaction per run."""
    recovered = []
    for run_id, owner in runs:
        closed = _recover_run(run_id, owner, why, now=now)
        if closed is not None:
            log.info(
                "recovered run %s of job %s from supervisor %s (%s): %s",
                closed.run_id,
                closed.job_id,
                closed.supervisor_id,
                why,
                closed.outcome.value,
            )
            recovered.append(closed)
    return recovered


def recover_orphans(
    this_supervisor_id: str,
    this_host: str,
    pid_alive: Callable[[int], bool],
    *,
    now: datetime,
) -> list[Recovered]:
    """Close every run left ``running`` by a supervisor that is not alive
    (see :func:`dead_supervisors`): ``succeeded`` if its log ends in a
    ``final_result``, ``blocked`` if in the agent's block, else
    ``interrupted``; and move its job on as :func:`finish_run` does. Never
    touches a run whose supervisor is alive. One transaction per run."""
    dead = dead_supervisors(this_supervisor_id, this_host, pid_alive, now=now)
    if not dead:
        return []
    orphans = Run.select(Run.id, Run.supervisor_id).where(
        (Run.outcome == RunOutcome.RUNNING) & Run.supervisor_id.in_(dead)
    )
    return _recover_each([(o.id, o.supervisor_id) for o in orphans], _SUPERVISOR_GONE, now=now)


def own_live_runs(supervisor_id: str, *, started_before: datetime) -> list[int]:
    """The runs the board shows ``running`` under ``supervisor_id`` that
    started before ``started_before``."""
    rows = Run.select(Run.id).where(
        (Run.outcome == RunOutcome.RUNNING)
        & (Run.supervisor_id == supervisor_id)
        & (Run.started_at < started_before)
    )
    return [row.id for row in rows]


def recover_lost_runs(supervisor_id: str, run_ids: list[int], *, now: datetime) -> list[Recovered]:
    """Close runs of a live supervisor that it no longer supervises (their
    runner gone, their end never recorded): of :func:`own_live_runs`, those
    its launcher does not hold. Closed as :func:`recover_orphans` closes
    them, one transaction per run; a run closed meanwhile is left as it is."""
    return _recover_each([(run_id, supervisor_id) for run_id in run_ids], _END_UNRECORDED, now=now)
