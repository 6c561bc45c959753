"""User intent on the board: crews and jobs as people change them.

Each change is a named function doing one short write transaction with a
guarded ``UPDATE … WHERE status = …``, so a lost race with the supervisor is a
clean :class:`~crewboard.errors.Conflict`, never a corruption; the event that
records a change commits with it. The supervisor alone writes run outcomes
(:mod:`crewboard.board.dispatch`): a running job can only be *asked* to stop
(``cancel_requested``).

The reading side (job list, detail, graph, change feed, public shapes, the
actions a job allows) is :mod:`crewboard.board.job_views`.
"""

from __future__ import annotations

import json
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from crewboard import limits
from crewboard.board import usage, webhooks
from crewboard.board.db import execute, write
from crewboard.board.events import EventKind, EventRow, record_event, record_events, user_actor
from crewboard.board.job_views import (
    CHUNK,
    JobAction,
    get_comment,
    get_job,
    job_actions,
    jobs_by_id,
)
from crewboard.board.models import Comment, Crew, Event, Job, JobEdge, JobStatus, Run
from crewboard.board.wake import wakes_supervisors
from crewboard.clock import iso
from crewboard.errors import Conflict, CrewboardError, NotFound, ValidationFailed
from crewboard.wakeup import JOBS, WEBHOOKS

if TYPE_CHECKING:
    from crewboard.workflows import CrewPlan

MAX_COMMENT_CHARS = 10_000
MAX_COMMENTS_PER_JOB = 1_000
MAX_FEEDBACK_CHARS = 20_000
CANCELLED_REASON = "cancelled"


def check_text(value: Any, max_chars: int) -> str | None:
    """What is wrong with a person's free text, or None: it must be a
    non-blank string of at most ``max_chars`` without control characters
    (newlines and tabs are fine)."""
    if not isinstance(value, str):
        return "must be a string"
    if not value.strip():
        return "must not be empty"
    if len(value) > max_chars:
        return f"must be at most {max_chars} characters"
    for ch in value:
        if ch not in "\n\r\t" and unicodedata.category(ch) in ("Cc", "Cs"):
            return "must not contain control characters"
    return None


# --- the dependency graph -----------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = defaultdict(list)
    for edge in JobEdge.select(JobEdge.parent, JobEdge.child):
        children[edge.parent_id].append(edge.child_id)
    return children


def descendants(roots: Iterable[int], children: dict[int, list[int]] | None = None) -> set[int]:
    """Every job that depends, directly or not, on one of ``roots``; reads
    the edges level by level unless a full ``children`` map is given."""
    found: set[int] = set()
    frontier = set(roots)
    while frontier:
        if children is not None:
            step = {c for parent in frontier for c in children.get(parent, ())}
        else:
            step = set()
            ids = sorted(frontier)
            for start in range(0, len(ids), CHUNK):
                step.update(
                    edge.child_id
                    for edge in JobEdge.select(JobEdge.child).where(
                        JobEdge.parent.in_(ids[start : start + CHUNK])
                    )
                )
        frontier = step - found
        found |= frontier
    return found


def _parents_done(job_id: int) -> bool:
    """Whether every parent is done (an archived parent that was done counts,
    as it does for the supervisor)."""
    parents = Job.select(Job.status, Job.status_before_archive).join(
        JobEdge, on=(JobEdge.parent == Job.id)
    )
    return all(
        p.status == JobStatus.DONE
        or (p.status == JobStatus.ARCHIVED and p.status_before_archive == JobStatus.DONE)
        for p in parents.where(JobEdge.child == job_id)
    )


def _requeue_status(job: Job, *, now: datetime) -> JobStatus:
    """Where a job goes when a person sends it back to the queue: ready if its
    parents are done and its scheduled time has come, else waiting."""
    if job.scheduled_at is not None and job.scheduled_at > now:
        return JobStatus.WAITING
    return JobStatus.READY if _parents_done(job.id) else JobStatus.WAITING


def _refused(job_id: int, doing: str) -> CrewboardError:
    """Why a guarded update changed nothing: the job is gone, or in a state
    that forbids ``doing``."""
    job = Job.get_or_none(Job.id == job_id)
    if job is None:
        return NotFound("no such job")
    return Conflict(f"cannot {doing} a job that is {job.status}")


# --- transitions --------------------------------------------------------------

# A crew is written with these prepared statements (it is on the path of
# every POST /api/jobs): the crew, then each job with its edges to the jobs
# it needs, then every job's ``created`` event in one statement.
_INSERT_CREW = """
INSERT INTO crew (template_id, title, inputs, owner_id, schedule_id, webhook_url, created_at)
VALUES (?, ?, json(?), ?, ?, ?, ?) RETURNING id
"""
_INSERT_JOB = """
INSERT INTO job (crew_id, owner_id, schedule_id, key, title, agent, prompt, artifact_name,
                 status, scheduled_at, available_at, timeout_s, max_retries, request_id,
                 attempts, interruptions, cancel_requested, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, FALSE, ?, ?) RETURNING id
"""
_INSERT_EDGE = "INSERT INTO job_edge (parent_id, child_id) VALUES (?, ?)"


@write
@wakes_supervisors(JOBS)
def create_crew(
    plan: CrewPlan,
    owner_id: int,
    *,
    scheduled_at: datetime | None = None,
    schedule_id: int | None = None,
    title: str | None = None,
    actor: str | None = None,
    max_queued: int | None = None,
    webhook_url: str | None = None,
    request_id: str | None = None,
    now: datetime,
) -> tuple[Crew, list[Job]]:
    """Write a planned crew — the crew, its jobs (in the plan's dependency
    order), their edges and a ``created`` event per job — all or nothing.

    Jobs without parents are ``ready`` now, or ``waiting`` until a future
    ``scheduled_at`` (the supervisor promotes them); the others are
    ``waiting`` on their parents. ``actor`` defaults to the owner;
    ``request_id`` is the HTTP request's that asked for the crew. The
    crew's finishes are posted to ``webhook_url``, else to the template's.
    LimitReached if the owner's queued jobs and the crew's would pass
    ``max_queued``.
    """
    usage.check_room(limits.QUEUED_JOBS, owner_id, max_queued, len(plan.jobs))
    actor = actor or user_actor(owner_id)
    future = scheduled_at if scheduled_at is not None and scheduled_at > now else None
    at = Job.created_at.db_value(now)
    title = (title or plan.title)[:300]
    crew_values = dict(
        template_id=plan.template_id,
        title=title,
        inputs=plan.inputs,
        owner=owner_id,
        schedule=schedule_id,
        webhook_url=webhook_url or plan.webhook_url,
        created_at=now,
    )
    (crew_id,) = execute(
        _INSERT_CREW,
        (
            plan.template_id,
            title,
            json.dumps(plan.inputs),
            owner_id,
            schedule_id,
            crew_values["webhook_url"],
            at,
        ),
    ).fetchone()
    crew = Crew(id=crew_id, **crew_values)
    by_key: dict[str, Job] = {}
    events: list[EventRow] = []
    for planned in plan.jobs:
        status = JobStatus.READY if not planned.needs and future is None else JobStatus.WAITING
        values = dict(
            key=planned.key,
            title=planned.title[:300],
            agent=planned.agent,
            prompt=planned.prompt,
            artifact_name=planned.artifact,
            status=status,
            scheduled_at=future,
            available_at=future or now,
            timeout_s=planned.timeout_s,
            max_retries=planned.retries,
            request_id=request_id,
        )
        (job_id,) = execute(
            _INSERT_JOB,
            (
                crew_id,
                owner_id,
                schedule_id,
                *(Job._meta.fields[name].db_value(value) for name, value in values.items()),
                at,
                at,
            ),
        ).fetchone()
        job = Job(
            id=job_id,
            crew=crew,
            owner=owner_id,
            schedule=schedule_id,
            created_at=now,
            updated_at=now,
            **values,
        )
        for parent_key in planned.needs:
            execute(_INSERT_EDGE, (by_key[parent_key].id, job_id))
        by_key[planned.key] = job
        data = {"crewId": crew_id, "status": status, "scheduledAt": iso(future)}
        if request_id:
            data["requestId"] = request_id
        message = f"created from template {plan.template_id}"
        events.append((job_id, owner_id, EventKind.CREATED, message, data))
    record_events(events, actor=actor, now=now)
    return crew, list(by_key.values())


@write
def add_comment(job_id: int, author_id: int, text: Any, *, now: datetime) -> Comment:
    """Add a comment; ValidationFailed when the text is empty, too long or
    holds control characters, or the job already holds too many."""
    problem = check_text(text, MAX_COMMENT_CHARS)
    if problem:
        raise ValidationFailed(f"text {problem}", {"text": problem})
    job = get_job(job_id)
    if Comment.select().where(Comment.job == job_id).count() >= MAX_COMMENTS_PER_JOB:
        raise ValidationFailed(
            "this job holds as many comments as it can",
            {"text": f"a job holds at most {MAX_COMMENTS_PER_JOB} comments"},
        )
    comment = Comment.create(job=job_id, author=author_id, text=text, created_at=now)
    Job.update(updated_at=now).where(Job.id == job_id).execute()
    record_event(
        EventKind.COMMENT,
        job=job,
        actor=user_actor(author_id),
        data={"commentId": comment.id},
        now=now,
    )
    return get_comment(comment.id)


def _requeue(job: Job, expected: str, action: str, *, now: datetime, **changes: Any) -> str:
    """Put ``job`` back on the queue with fresh retries, if it is still in
    ``expected``: ready, or waiting while a parent is not done. Returns the
    status it took; Conflict if someone else moved it first."""
    target = _requeue_status(job, now=now)
    updated = (
        Job.update(
            status=target,
            blocked_reason=None,
            cancel_requested=False,
            attempts=0,
            interruptions=0,
            available_at=max(now, job.scheduled_at or now),
            updated_at=now,
            **changes,
        )
        .where((Job.id == job.id) & (Job.status == expected))
        .execute()
    )
    if not updated:
        raise _refused(job.id, action)
    return target


@write
@wakes_supervisors(JOBS)
def unblock(job_id: int, user_id: int, *, max_queued: int | None = None, now: datetime) -> Job:
    """A blocked job goes back on the queue with its retries reset: ready,
    or waiting while a parent is not done. Conflict unless it is blocked;
    LimitReached if it would take its owner past ``max_queued``."""
    job = get_job(job_id)
    if job.status == JobStatus.BLOCKED:
        usage.check_room(limits.QUEUED_JOBS, job.owner_id, max_queued)
    target = _requeue(job, JobStatus.BLOCKED, "unblock", now=now)
    record_event(
        EventKind.UNBLOCK,
        job=job,
        actor=user_actor(user_id),
        data={"from": JobStatus.BLOCKED, "status": target},
        now=now,
    )
    return get_job(job_id)


@write
@wakes_supervisors(JOBS)
def redo(
    job_id: int, user_id: int, feedback: Any, *, max_queued: int | None = None, now: datetime
) -> Job:
    """Re-queue a done or blocked job with ``feedback`` for its next prompt.
    Its done and ready descendants go back to waiting, so results re-flow.
    Conflict in any other state, or while a descendant is running;
    LimitReached if the jobs it queues would take the owner past
    ``max_queued``."""
    problem = check_text(feedback, MAX_FEEDBACK_CHARS)
    if problem:
        raise ValidationFailed(f"feedback {problem}", {"feedback": problem})
    job = get_job(job_id)
    if JobAction.REDO not in job_actions(job):
        raise Conflict(f"only a done or blocked job can be redone; this one is {job.status}")
    below = jobs_by_id(descendants([job_id]))
    running = sorted(d.id for d in below.values() if d.status == JobStatus.RUNNING)
    if running:
        raise Conflict(
            f"job {running[0]} depends on this one and is running; wait for it or cancel it"
        )
    rewinding = sum(1 for d in below.values() if d.status == JobStatus.DONE)
    usage.check_room(limits.QUEUED_JOBS, job.owner_id, max_queued, 1 + rewinding)
    target = _requeue(job, job.status, "redo", now=now, feedback=feedback)
    actor = user_actor(user_id)
    # Ready descendants too: they have not started, and would run on the old result.
    rewound = []
    for child in sorted(below.values(), key=lambda j: j.id):
        if child.status not in (JobStatus.DONE, JobStatus.READY):
            continue
        if (
            Job.update(status=JobStatus.WAITING, updated_at=now)
            .where((Job.id == child.id) & (Job.status == child.status))
            .execute()
        ):
            rewound.append(child.id)
            record_event(
                EventKind.STATUS,
                job=child,
                actor=actor,
                message=f"waits again: job {job_id}, which it depends on, is being redone",
                data={"from": child.status, "status": JobStatus.WAITING, "redoOf": job_id},
                now=now,
            )
    record_event(
        EventKind.REDO,
        job=job,
        actor=actor,
        message=feedback,
        data={"from": job.status, "status": target, "rewound": rewound},
        now=now,
    )
    return get_job(job_id)


@write
def archive(job_id: int, user_id: int, *, now: datetime) -> Job:
    """Soft-delete a job (``archived``, its former status kept). Conflict
    while it runs; archiving an archived job changes nothing."""
    job = get_job(job_id)
    if job.status == JobStatus.ARCHIVED:
        return job
    updated = (
        Job.update(status=JobStatus.ARCHIVED, status_before_archive=job.status, updated_at=now)
        .where((Job.id == job_id) & (Job.status == job.status) & (Job.status != JobStatus.RUNNING))
        .execute()
    )
    if not updated:
        raise _refused(job_id, "archive")
    record_event(
        EventKind.ARCHIVE,
        job=job,
        actor=user_actor(user_id),
        data={"from": job.status, "status": JobStatus.ARCHIVED},
        now=now,
    )
    return get_job(job_id)


@write
@wakes_supervisors(JOBS)
def unarchive(job_id: int, user_id: int, *, now: datetime) -> Job:
    """Restore an archived job to the status it had before (done, blocked,
    waiting or ready: a queued job is queued again). Conflict unless it is
    archived."""
    job = get_job(job_id)
    if job.status != JobStatus.ARCHIVED:
        raise Conflict(f"only an archived job can be restored; this one is {job.status}")
    before = job.status_before_archive or JobStatus.DONE
    updated = (
        Job.update(status=before, status_before_archive=None, updated_at=now)
        .where((Job.id == job_id) & (Job.status == JobStatus.ARCHIVED))
        .execute()
    )
    if not updated:
        raise _refused(job_id, "restore")
    record_event(
        EventKind.UNARCHIVE,
        job=job,
        actor=user_actor(user_id),
        data={"from": JobStatus.ARCHIVED, "status": before},
        now=now,
    )
    return get_job(job_id)


@write
@wakes_supervisors(JOBS, WEBHOOKS)
def request_cancel(job_id: int, user_id: int, *, now: datetime) -> Job:
    """Cancel a job. A waiting or ready job is taken off the queue (blocked,
    "cancelled") at once; a running one is flagged, and the supervisor stops
    its runner and ends the run ``cancelled``. Conflict in any other state."""
    job = get_job(job_id)
    actor = user_actor(user_id)
    if job.status in (JobStatus.WAITING, JobStatus.READY):
        updated = (
            Job.update(status=JobStatus.BLOCKED, blocked_reason=CANCELLED_REASON, updated_at=now)
            .where((Job.id == job_id) & (Job.status == job.status))
            .execute()
        )
        if updated:
            event = record_event(
                EventKind.CANCEL,
                job=job,
                actor=actor,
                message=CANCELLED_REASON,
                data={"from": job.status, "status": JobStatus.BLOCKED},
                now=now,
            )
            webhooks.queue_finished(job, JobStatus.BLOCKED, event.id, now=now)
            return get_job(job_id)
    elif job.status == JobStatus.RUNNING:
        if job.cancel_requested:
            return job
        updated = (
            Job.update(cancel_requested=True, updated_at=now)
            .where((Job.id == job_id) & (Job.status == JobStatus.RUNNING))
            .execute()
        )
        if updated:
            record_event(
                EventKind.CANCEL_REQUESTED,
                job=job,
                actor=actor,
                message="stopping its runner",
                now=now,
            )
            return get_job(job_id)
    raise _refused(job_id, "cancel")


def _run_ids_of(job_ids: Sequence[int]) -> list[int]:
    ids: list[int] = []
    for start in range(0, len(job_ids), CHUNK):
        chunk = list(job_ids[start : start + CHUNK])
        ids.extend(run.id for run in Run.select(Run.id).where(Run.job.in_(chunk)))
    return sorted(ids)


def _remove(jobs: Sequence[Job], actor: str, message: str, *, now: datetime) -> list[int]:
    """Delete ``jobs`` with their runs, edges, events and comments, and any
    crew left empty; returns the removed runs' ids.

    A ``deleted`` event per owner (with no job, so it outlives them) tells
    the change feed which jobs went.
    """
    ids = sorted(job.id for job in jobs)
    if not ids:
        return []
    by_owner: dict[int, list[int]] = defaultdict(list)
    for job in jobs:
        by_owner[job.owner_id].append(job.id)
    for owner_id, owned in sorted(by_owner.items()):
        Event.create(
            job=None,
            owner=owner_id,
            kind=EventKind.DELETED,
            actor=actor,
            message=message,
            data={"jobIds": sorted(owned)},
            created_at=now,
        )
    run_ids = _run_ids_of(ids)
    crew_ids = {job.crew_id for job in jobs}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        # Children first and explicitly, rather than trusting every backend's cascade.
        Comment.delete().where(Comment.job.in_(chunk)).execute()
        Event.delete().where(Event.job.in_(chunk)).execute()
        Run.delete().where(Run.job.in_(chunk)).execute()
        webhooks.forget_jobs(chunk)
        JobEdge.delete().where(JobEdge.parent.in_(chunk) | JobEdge.child.in_(chunk)).execute()
        Job.delete().where(Job.id.in_(chunk)).execute()
    for crew_id in sorted(crew_ids):
        if not Job.select().where(Job.crew == crew_id).exists():
            Crew.delete().where(Crew.id == crew_id).execute()
    return run_ids


@write
def delete_job(job_id: int, user_id: int, *, cascade: bool = False, now: datetime) -> list[int]:
    """Delete a job for good; returns the ids of the runs removed with it,
    whose logs, artifacts and workspaces the caller removes. Conflict while it
    runs, or while non-archived jobs depend on it unless ``cascade`` (then
    they go too — refused while any of them runs)."""
    job = get_job(job_id)
    if JobAction.DELETE not in job_actions(job):
        raise Conflict("a running job cannot be deleted; cancel it first")
    below = jobs_by_id(descendants([job_id]))
    if cascade:
        running = sorted(d.id for d in below.values() if d.status == JobStatus.RUNNING)
        if running:
            raise Conflict(f"job {running[0]} depends on this one and is running")
        doomed = [job, *below.values()]
    else:
        live = sorted(d.id for d in below.values() if d.status != JobStatus.ARCHIVED)
        if live:
            raise Conflict(
                f"job {live[0]} depends on this one; delete with cascade=true to remove "
                "the jobs that depend on it too",
                # Clients word it for their own controls (the browser: a checkbox).
                {"dependent": live[0]},
            )
        doomed = [job]
    return _remove(doomed, user_actor(user_id), "deleted", now=now)


@write
def clear(user_id: int, status: str | None = None, *, now: datetime) -> dict[str, list[int]]:
    """Wipe the board, or one status column, across all users: each job
    goes with everything that depends on it. Running jobs are never touched,
    and a job whose removal would take a running job with it is kept.
    Returns ``{"deleted": [job ids], "skipped": [job ids], "runIds": [...]}``."""
    query = Job.select(Job.id, Job.status)
    if status:
        query = query.where(Job.status == status)
    candidates = {job.id: job.status for job in query}
    children = _children_map()
    running = {job.id for job in Job.select(Job.id).where(Job.status == JobStatus.RUNNING)}
    doomed: set[int] = set()
    skipped: list[int] = []
    for job_id in sorted(candidates):
        if job_id in doomed:
            continue
        closure = {job_id} | descendants([job_id], children)
        if closure & running:
            skipped.append(job_id)
            continue
        doomed |= closure
    jobs = list(jobs_by_id(doomed).values())
    message = f"cleared the {status} jobs" if status else "cleared the board"
    run_ids = _remove(jobs, user_actor(user_id), message, now=now)
    return {"deleted": sorted(doomed), "skipped": skipped, "runIds": run_ids}
