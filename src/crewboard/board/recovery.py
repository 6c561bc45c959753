"""Recovery of runs whose supervisor died: the runs left ``running`` by a
supervisor that is no longer alive are closed from what their logs say, and
their jobs move on as if the run had ended (see
:func:`crewboard.board.dispatch.finish_run`). A supervisor is alive while its
heartbeat is fresh — and, on this host, while its pid exists; a run whose
supervisor is alive is never touched. A recovered run's ``run_ended`` event
names the supervisor it was recovered from.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from crewboard import sessionlog
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


def _orphan_outcome(log_path: str | None) -> tuple[RunOutcome, str | None, str | None]:
    """How an orphaned run ended, from the last record of its log."""
    last = sessionlog.last_record(log_path) if log_path else None
    if last is not None and last.get("type") == "final_result":
        return RunOutcome.SUCCEEDED, None, str(last.get("text") or "")
    if last is not None and last.get("type") == "blocked":
        return RunOutcome.BLOCKED, str(last.get("reason") or "") or None, None
    return RunOutcome.INTERRUPTED, "its supervisor went away", None


@write
def _recover_run(run_id: int, owner: str, *, now: datetime) -> Recovered | None:
    run = run_with_job(run_id)
    if run is None or run.outcome != RunOutcome.RUNNING or run.supervisor_id != owner:
        return None
    outcome, error, result = _orphan_outcome(run.log_path)
    if run.log_path and outcome == RunOutcome.INTERRUPTED:
        sessionlog.ensure_terminal(run.log_path, "run interrupted: its supervisor went away")
    finished = close_run(
        run,
        outcome,
        exit_code=None,
        error=error,
        result=result,
        artifact=run.artifact,
        now=now,
        guard=(Run.supervisor_id == owner),
        how=f" (recovered from supervisor {owner})",
    )
    if finished is None:
        return None
    return Recovered(run.id, run.job_id, owner, outcome, finished.job_status)


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
    recovered = []
    for orphan in list(orphans):
        closed = _recover_run(orphan.id, orphan.supervisor_id, now=now)
        if closed is not None:
            log.info(
                "recovered run %s of job %s from supervisor %s: %s",
                closed.run_id,
                closed.job_id,
                closed.supervisor_id,
                closed.outcome.value,
            )
            recovered.append(closed)
    return recovered
