"""The run lifecycle of jobs: claiming, starting, finishing and retrying runs
(the runs of a dead supervisor are closed by :mod:`crewboard.board.recovery`,
with the same policy). Only the supervisor calls these; the web process writes user
intent (new jobs, cancel requests…) through :mod:`crewboard.board.jobs`.

Every change of state is one named function doing one short write transaction
(``BEGIN IMMEDIATE`` on SQLite) with a guarded ``UPDATE … WHERE status = …``,
so a lost race is a no-op rather than a corruption, and it records its events
in the same transaction. The failure policy of a finished run is
:func:`settlement`, one small decision per way a run can end; the backoff
between retries is the pure function :func:`retry_delay_s`. A claimed run's
prompt is read from the board here and laid out by
:mod:`crewboard.workflows.run_prompt`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import peewee

from crewboard.board import webhooks
from crewboard.board.db import is_sqlite, write
from crewboard.board.events import SUPERVISOR, EventKind, record_event
from crewboard.board.models import (
    Comment,
    Event,
    Job,
    JobEdge,
    JobStatus,
    Run,
    RunOutcome,
    User,
)
from crewboard.clock import iso
from crewboard.workflows.run_prompt import ParentResult, PromptParts, compose_prompt

# The backoff before retry n (1-based) is 2**n seconds, capped.
RETRY_BASE_S = 2.0
RETRY_CAP_S = 600.0
# An interrupted run requeues its job for free this many times in a row; one
# more and the job is blocked as a likely crash loop.
MAX_INTERRUPTIONS = 3


def retry_delay_s(failures: int, base_s: float = RETRY_BASE_S, cap_s: float = RETRY_CAP_S) -> float:
    """Seconds to wait before the retry that follows the ``failures``-th
    failed attempt: 2, 4, 8, … capped at ``cap_s``."""
    if failures < 1:
        return 0.0
    # Cap the exponent first so a huge count cannot overflow a float.
    return min(cap_s, base_s ** min(failures, 64))


def parent_results(job_id: int) -> list[ParentResult]:
    """Each parent of the job with its final result (None until it has one),
    in the order the parents were created."""
    parent = Job.alias()
    rows = (
        parent.select(parent.id, parent.key, parent.title, parent.status, parent.result)
        .join(JobEdge, on=(JobEdge.parent == parent.id))
        .where(JobEdge.child == job_id)
        .order_by(parent.id)
    )
    return [ParentResult(p.id, p.key, p.title, p.status, p.result) for p in rows]


def prompt_parts(job: Job) -> PromptParts:
    """What a run of this job is told, read from the board: its prompt, its
    parents' results, the comments on it and its redo feedback."""
    comments = (
        Comment.select(Comment.text, User.name, User.email)
        .join(User)
        .where(Comment.job == job.id)
        .order_by(Comment.id)
    )
    return PromptParts(
        prompt=job.prompt,
        parents=tuple(parent_results(job.id)),
        comments=tuple((c.author.name or c.author.email, c.text) for c in comments),
        feedback=job.feedback,
    )


# -- Claiming ------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A job a supervisor has just claimed, with what its launcher needs."""

    run_id: int
    job_id: int
    attempt: int
    agent: str
    artifact: str | None
    timeout_s: float
    log_path: Path
    prompt_parts: PromptParts  # read from the board with the claim
    # The request that created the job (None: a schedule did), for log lines.
    request_id: str | None = None
    # How long the job had been ready, waiting for a runner, when claimed.
    queued_s: float = 0.0

    @property
    def prompt(self) -> str:
        """The full prompt the runner is given, laid out from its parts."""
        return compose_prompt(self.prompt_parts)


def _owner_enabled() -> peewee.Expression:
    """The claim's guard against running a disabled user's job, whatever
    race put it back to ready (disabling blocks their queue, but a parent's
    end or a requeue may still make one ready)."""
    return Job.owner.not_in(User.select(User.id).where(User.disabled == True))  # noqa: E712


@write
def claim_ready_job(
    supervisor_id: str, log_path: Callable[[int], Path], *, now: datetime
) -> Claim | None:
    """Claim the oldest ready job whose time has come: the job goes
    ``running`` and gets a new Run owned by ``supervisor_id`` with its log at
    ``log_path(run_id)``. None when nothing is ready. The guarded update means
    two supervisors racing for one job give it one run, never two."""
    query = (
        Job.select()
        .where(
            (Job.status == JobStatus.READY)
            & (Job.available_at <= now)
            & (Job.cancel_requested == False)  # noqa: E712 - peewee expression
            & _owner_enabled()
        )
        .order_by(Job.id)
        .limit(1)
    )
    if not is_sqlite():
        # Supervisors on PostgreSQL pass over each other's rows instead of queueing.
        query = query.for_update(skip_locked=True)
    job = query.first()
    if job is None:
        return None
    taken = (
        Job.update(status=JobStatus.RUNNING, updated_at=now)
        .where((Job.id == job.id) & (Job.status == JobStatus.READY))
        .execute()
    )
    if not taken:
        return None  # another supervisor got there first; the next poll looks again
    attempt = Run.select().where(Run.job == job.id).count() + 1
    run = Run.create(
        job=job.id,
        attempt=attempt,
        outcome=RunOutcome.RUNNING,
        supervisor_id=supervisor_id,
        started_at=now,
        artifact=job.artifact_name,
    )
    path = log_path(run.id)
    run.log_path = str(path)
    run.save(only=[Run.log_path])
    job.status = JobStatus.RUNNING
    record_event(
        EventKind.DISPATCHED,
        job=job,
        actor=SUPERVISOR,
        message=f"run {run.id} (attempt {attempt}) dispatched",
        data={"runId": run.id, "attempt": attempt, "supervisorId": supervisor_id},
        now=now,
    )
    return Claim(
        run_id=run.id,
        job_id=job.id,
        attempt=attempt,
        agent=job.agent,
        artifact=job.artifact_name,
        timeout_s=float(job.timeout_s),
        log_path=path,
        prompt_parts=prompt_parts(job),
        request_id=job.request_id,
        queued_s=max(0.0, (now - max(job.available_at, job.updated_at)).total_seconds()),
    )


@write
def set_run_pid(run_id: int, pid: int, *, now: datetime) -> bool:
    """Record the runner's pid once its process is up. False if the run is
    no longer live (a recovery closed it meanwhile)."""
    run = run_with_job(run_id)
    if run is None:
        return False
    updated = (
        Run.update(pid=pid)
        .where((Run.id == run_id) & (Run.outcome == RunOutcome.RUNNING))
        .execute()
    )
    if updated:
        record_event(
            EventKind.RUN_STARTED,
            job=run.job,
            actor=SUPERVISOR,
            message=f"run {run_id} started (pid {pid})",
            data={"runId": run_id, "pid": pid},
            now=now,
        )
    return bool(updated)


def run_with_job(run_id: int) -> Run | None:
    """The run with its job loaded in the same query (``run.job``)."""
    return Run.select(Run, Job).join(Job, on=(Run.job == Job.id)).where(Run.id == run_id).first()


# -- Waiting → ready -------------------------------------------------------------


def _parents_all_done() -> peewee.Expression:
    parent = Job.alias()
    unfinished = (
        JobEdge.select(JobEdge.id)
        .join(parent, on=(JobEdge.parent == parent.id))
        .where(
            (JobEdge.child == Job.id)
            & (parent.status != JobStatus.DONE)
            & ~(
                (parent.status == JobStatus.ARCHIVED)
                & (parent.status_before_archive == JobStatus.DONE)
            )
        )
    )
    return ~peewee.fn.EXISTS(unfinished)


def _promotable(*, now: datetime) -> peewee.Expression:
    return (
        (Job.status == JobStatus.WAITING)
        & ((Job.scheduled_at.is_null()) | (Job.scheduled_at <= now))
        & _parents_all_done()
    )


def _promote(*, now: datetime, only: Iterable[int] | None = None) -> list[int]:
    """Make waiting jobs ready whose parents are all done and whose scheduled
    time has come; returns their ids."""
    where = _promotable(now=now)
    if only is not None:
        ids = list(only)
        if not ids:
            return []
        where &= Job.id.in_(ids)
    promoted = []
    for job in Job.select().where(where).order_by(Job.id):
        updated = (
            Job.update(status=JobStatus.READY, updated_at=now)
            .where((Job.id == job.id) & (Job.status == JobStatus.WAITING))
            .execute()
        )
        if updated:
            record_event(
                EventKind.READY, job=job, actor=SUPERVISOR, message="ready to run", now=now
            )
            promoted.append(job.id)
    return promoted


@write
def _promote_in_transaction(*, now: datetime) -> list[int]:
    return _promote(now=now)


def promote_waiting(*, now: datetime) -> list[int]:
    """Waiting → ready for every job whose parents are all done and whose
    ``scheduled_at`` has come. Returns the ids promoted. Takes the write lock
    only when a read finds something to promote (it runs every dispatch round)."""
    if not Job.select(Job.id).where(_promotable(now=now)).exists():
        return []
    return _promote_in_transaction(now=now)


# -- Finishing -------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """What became of a run's job after :func:`finish_run`."""

    job_id: int
    job_status: str
    available_at: datetime | None = None
    promoted: tuple[int, ...] = field(default=())


def _cancelled_by(job: Job) -> str:
    """Who asked to cancel the job, from the latest cancel event on it."""
    event = (
        Event.select(Event.actor)
        .where(
            (Event.job == job.id) & (Event.kind.startswith("cancel")) & (Event.actor != SUPERVISOR)
        )
        .order_by(Event.id.desc())
        .first()
    )
    if event is None:
        return "a user"
    if event.actor.startswith("user:") and event.actor[5:].isdigit():
        user = User.get_or_none(User.id == int(event.actor[5:]))
        if user is not None:
            return user.email
    return event.actor


def _close_run(
    run: Run,
    outcome: RunOutcome,
    *,
    exit_code: int | None,
    error: str | None,
    artifact: str | None,
    now: datetime,
    guard: peewee.Expression | None = None,
) -> bool:
    where = (Run.id == run.id) & (Run.outcome == RunOutcome.RUNNING)
    if guard is not None:
        where &= guard
    return bool(
        Run.update(
            outcome=outcome,
            exit_code=exit_code,
            error=error,
            artifact=artifact,
            ended_at=now,
            duration_s=max(0.0, (now - run.started_at).total_seconds()),
        )
        .where(where)
        .execute()
    )


@dataclass(frozen=True)
class Settlement:
    """Where the failure policy sends a running job once its run has ended,
    and the event that says why."""

    status: JobStatus
    kind: EventKind
    message: str
    available_at: datetime | None = None
    # Counters and result the decision changes on the job row.
    changes: dict[str, object] = field(default_factory=dict)


def _succeeded(result: str | None) -> Settlement:
    return Settlement(JobStatus.DONE, EventKind.DONE, "done", changes={"result": result or ""})


def _blocked_by_agent(error: str | None) -> Settlement:
    reason = error or "no reason given"
    return Settlement(JobStatus.BLOCKED, EventKind.BLOCKED, f"blocked by the agent: {reason}")


def _cancelled(job: Job) -> Settlement:
    return Settlement(JobStatus.BLOCKED, EventKind.BLOCKED, f"cancelled by {_cancelled_by(job)}")


def _interrupted(job: Job, error: str | None, now: datetime) -> Settlement:
    """Back to the queue at once, no retry used, unless this interruption
    makes one too many in a row (a likely crash loop)."""
    interruptions = job.interruptions + 1
    why = error or "the supervisor stopped"
    changes: dict[str, object] = {"interruptions": interruptions}
    if interruptions > MAX_INTERRUPTIONS:
        message = f"interrupted {interruptions} times in a row (a likely crash loop): {why}"
        return Settlement(JobStatus.BLOCKED, EventKind.BLOCKED, message, changes=changes)
    message = f"interrupted ({why}); back in the queue"
    return Settlement(JobStatus.READY, EventKind.REQUEUED, message, now, changes)


def _failed(job: Job, outcome: RunOutcome, error: str | None, now: datetime) -> Settlement:
    """Retried after a backoff while retries are left, else blocked."""
    failures = job.attempts + 1
    what = f"{outcome.value.replace('_', ' ')}: {error or 'no reason given'}"
    changes: dict[str, object] = {"attempts": failures}
    if failures <= job.max_retries:
        delay_s = retry_delay_s(failures)
        message = f"{what}; retry {failures} of {job.max_retries} in {delay_s:g} s"
        available_at = now + timedelta(seconds=delay_s)
        return Settlement(JobStatus.READY, EventKind.RETRY, message, available_at, changes)
    tries = "no retries" if job.max_retries == 0 else f"{job.max_retries} retries"
    message = f"{what} (after {tries})"
    return Settlement(JobStatus.BLOCKED, EventKind.BLOCKED, message, changes=changes)


def settlement(
    job: Job, outcome: RunOutcome, *, error: str | None, result: str | None, now: datetime
) -> Settlement:
    """The failure policy: what becomes of a running job whose run ended
    with ``outcome``. A pending cancel request wins over whatever else
    stopped the run, success and the agent's own block aside."""
    if outcome == RunOutcome.SUCCEEDED:
        return _succeeded(result)
    if outcome == RunOutcome.BLOCKED:
        return _blocked_by_agent(error)
    if outcome == RunOutcome.CANCELLED or job.cancel_requested:
        return _cancelled(job)
    if outcome == RunOutcome.INTERRUPTED:
        return _interrupted(job, error, now)
    return _failed(job, outcome, error, now)


def _job_changes(outcome: RunOutcome, settled: Settlement, now: datetime) -> dict[str, object]:
    """The job row's new values: any cancel request is answered, and a run
    that was not interrupted ends a streak of interruptions."""
    values: dict[str, object] = {"updated_at": now, "cancel_requested": False}
    if outcome != RunOutcome.INTERRUPTED:
        values["interruptions"] = 0
    values.update(settled.changes)
    values["status"] = settled.status
    if settled.available_at is not None:
        values["available_at"] = settled.available_at
    if settled.status == JobStatus.BLOCKED:
        values["blocked_reason"] = settled.message
    elif settled.status == JobStatus.DONE:
        values["blocked_reason"] = None
    return values


def _settle_job(
    run: Run,
    outcome: RunOutcome,
    *,
    error: str | None,
    result: str | None,
    now: datetime,
) -> Finished:
    """Move the run's job on by the failure policy and record why; a job
    that is done makes its waiting children ready in the same transaction."""
    job = run.job
    if job.status != JobStatus.RUNNING:
        # Someone moved it already (an operator's cleanup): leave it be.
        return Finished(job.id, job.status)
    settled = settlement(job, outcome, error=error, result=result, now=now)
    values = _job_changes(outcome, settled, now)
    Job.update(**values).where((Job.id == job.id) & (Job.status == JobStatus.RUNNING)).execute()
    data: dict[str, object] = {"runId": run.id, "outcome": outcome.value}
    if settled.available_at is not None:
        data["availableAt"] = iso(settled.available_at)
    event = record_event(
        settled.kind, job=job, actor=SUPERVISOR, message=settled.message, data=data, now=now
    )
    webhooks.queue_finished(job, settled.status, event, now=now)
    promoted: list[int] = []
    if settled.status == JobStatus.DONE:
        children = [
            e.child_id for e in JobEdge.select(JobEdge.child).where(JobEdge.parent == job.id)
        ]
        promoted = _promote(now=now, only=children)
    return Finished(job.id, settled.status, settled.available_at, tuple(promoted))


def close_run(
    run: Run,
    outcome: RunOutcome,
    *,
    exit_code: int | None,
    error: str | None,
    result: str | None,
    artifact: str | None,
    now: datetime,
    guard: peewee.Expression | None = None,
    how: str = "",
) -> Finished | None:
    """Close ``run`` (if still live, and ``guard`` holds) with ``outcome``,
    record it, and move its job on by the failure policy. Call inside a
    write transaction; None if the run was no longer live."""
    if not _close_run(
        run, outcome, exit_code=exit_code, error=error, artifact=artifact, now=now, guard=guard
    ):
        return None
    duration_s = max(0.0, (now - run.started_at).total_seconds())
    record_event(
        EventKind.RUN_ENDED,
        job=run.job,
        actor=SUPERVISOR,
        message=f"run {run.id} {outcome.value}{how}" + (f": {error}" if error else ""),
        data={
            "runId": run.id,
            "outcome": outcome.value,
            "exitCode": exit_code,
            "durationS": round(duration_s, 3),
        },
        now=now,
    )
    return _settle_job(run, outcome, error=error, result=result, now=now)


@write
def finish_run(
    run_id: int,
    outcome: RunOutcome,
    *,
    exit_code: int | None = None,
    error: str | None = None,
    result: str | None = None,
    artifact: str | None = None,
    now: datetime,
) -> Finished | None:
    """Close a live run with its outcome and move its job on (see :func:`settlement`):

    - ``succeeded`` → job ``done`` with ``result``; children whose parents are
      now all done become ``ready`` in the same transaction;
    - ``blocked`` → job ``blocked`` with the agent's reason (``error``);
    - ``cancelled`` → job ``blocked`` ("cancelled by …");
    - ``failed``/``crashed``/``timed_out`` → ``ready`` after a backoff while
      retries are left, else ``blocked`` with the reason;
    - ``interrupted`` → ``ready`` at once, no retry used, unless it is the
      fourth interruption in a row (then ``blocked``).

    A pending cancel request turns any unsuccessful end into a cancel. Returns
    None, changing nothing, if the run was no longer live."""
    run = run_with_job(run_id)
    if run is None or run.outcome != RunOutcome.RUNNING:
        return None
    return close_run(
        run,
        RunOutcome(outcome),
        exit_code=exit_code,
        error=error,
        result=result,
        artifact=artifact,
        now=now,
    )


# -- What the dispatcher looks at ------------------------------------------------


def runs_to_cancel(supervisor_id: str) -> list[int]:
    """Live runs of this supervisor whose job a user asked to cancel."""
    rows = (
        Run.select(Run.id)
        .join(Job, on=(Run.job == Job.id))
        .where(
            (Run.outcome == RunOutcome.RUNNING)
            & (Run.supervisor_id == supervisor_id)
            & (Job.cancel_requested == True)  # noqa: E712 - peewee expression
        )
    )
    return [row.id for row in rows]


def runs_not_live(supervisor_id: str, run_ids: Iterable[int]) -> list[int]:
    """Of the runs this supervisor believes it is running, those the board no
    longer shows as its live runs (another supervisor's recovery closed them
    while this one was unresponsive): their runners must stop."""
    ids = list(run_ids)
    if not ids:
        return []
    live = {
        row.id
        for row in Run.select(Run.id).where(
            Run.id.in_(ids)
            & (Run.outcome == RunOutcome.RUNNING)
            & (Run.supervisor_id == supervisor_id)
        )
    }
    return [run_id for run_id in ids if run_id not in live]


def next_due_at(*, now: datetime) -> datetime | None:
    """The earliest future moment a job becomes claimable (a retry's backoff
    ending, a scheduled time arriving), so the dispatcher wakes for it."""
    ready = (
        Job.select(peewee.fn.MIN(Job.available_at))
        .where((Job.status == JobStatus.READY) & (Job.available_at > now))
        .scalar()
    )
    scheduled = (
        Job.select(peewee.fn.MIN(Job.scheduled_at))
        .where((Job.status == JobStatus.WAITING) & (Job.scheduled_at > now))
        .scalar()
    )
    times = [
        when
        for raw in (ready, scheduled)
        if raw is not None and (when := Job.available_at.python_value(raw)) is not None
    ]
    return min(times) if times else None
