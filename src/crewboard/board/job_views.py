"""Reading the board as people see it: the job list (keyset-paginated and
scoped to the viewer), job detail, a crew's graph, the change feed, the
public JSON shapes of jobs, runs and comments (``openapi.yaml``'s ``Job``,
``JobSummary``, ``Run``, ``Comment``, ``JobDetail``, ``Graph``), and the
actions a job allows (:func:`job_actions`), which every job carries so
clients offer only those.

Lists and the change feed carry :func:`job_summary`: previews of the long
texts (prompt, result) and their lengths, read as such from the database
(:func:`summaries_query`), so a page costs the same whatever the jobs said.
The whole texts come with one job (:func:`job_public`, :func:`job_detail`).

Nothing here writes; the named transitions live in :mod:`crewboard.board.jobs`.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

import peewee

from crewboard.board.events import event_public, feed_position, position_of
from crewboard.board.models import Comment, Crew, Event, Job, JobEdge, JobStatus, Run, User
from crewboard.board.users import Principal
from crewboard.clock import iso
from crewboard.errors import NotFound, ValidationFailed

MAX_PAGE = 200
DEFAULT_PAGE = 50
DETAIL_EVENTS = 500
CHUNK = 500  # ids per IN (...) list, well under SQLite's variable limit
# Characters of a long text (prompt, result, reason, feedback) a summary carries.
PREVIEW_CHARS = 300

# Without ?status= the list shows every status but archived (a soft delete).
LISTED_BY_DEFAULT = (
    JobStatus.WAITING,
    JobStatus.READY,
    JobStatus.RUNNING,
    JobStatus.BLOCKED,
    JobStatus.DONE,
)


# --- what a job allows ---------------------------------------------------------


class JobAction(StrEnum):
    """What a person can do to a job, in the order clients offer them."""

    UNBLOCK = "unblock"  # a blocked job goes back to the queue
    REDO = "redo"  # a done or blocked job runs again with feedback
    CANCEL = "cancel"  # a queued job is taken off the queue; a running one is stopped
    ARCHIVE = "archive"  # the job leaves the board, kept (a soft delete)
    UNARCHIVE = "unarchive"  # an archived job comes back, in the status it had
    DELETE = "delete"  # the job goes for good, with its runs and files


def job_actions(job: Job) -> list[str]:
    """The actions ``job`` allows as it is now, from its status and its live
    run. The transitions may still refuse one for another job's sake (a
    running descendant, say), with a Conflict that says so."""
    status = job.status
    queued = status in (JobStatus.WAITING, JobStatus.READY)
    allowed = {
        JobAction.UNBLOCK: status == JobStatus.BLOCKED,
        JobAction.REDO: status in (JobStatus.DONE, JobStatus.BLOCKED),
        # A running job asked to stop already has its cancel under way.
        JobAction.CANCEL: queued or (status == JobStatus.RUNNING and not job.cancel_requested),
        JobAction.ARCHIVE: status not in (JobStatus.RUNNING, JobStatus.ARCHIVED),
        JobAction.UNARCHIVE: status == JobStatus.ARCHIVED,
        JobAction.DELETE: status != JobStatus.RUNNING,
    }
    return [action.value for action in JobAction if allowed[action]]


# --- shapes -------------------------------------------------------------------


def jobs_query() -> peewee.ModelSelect[Job]:
    """Jobs with the owner's email and the crew's template joined in, which
    :func:`job_public` shows (one query, not one per job)."""
    return (
        Job.select(Job, User.id, User.email, Crew.id, Crew.template_id)
        .join(User, on=(Job.owner == User.id))
        .switch(Job)
        .join(Crew, on=(Job.crew == Crew.id))
        .switch(Job)
    )


def _job_fields(job: Job, **texts: Any) -> dict[str, Any]:
    """The fields every shape of a job shows, with its texts (whole or as
    previews) in their places."""
    return {
        "id": job.id,
        "crewId": job.crew_id,
        "title": job.title,
        "key": job.key,
        "agent": job.agent,
        "status": job.status,
        **texts,
        "artifactName": job.artifact_name,
        "scheduledAt": iso(job.scheduled_at),
        "availableAt": iso(job.available_at),
        "attempts": job.attempts,
        "maxRetries": job.max_retries,
        "timeoutS": job.timeout_s,
        "cancelRequested": job.cancel_requested,
        "actions": job_actions(job),
        "owner": {"id": job.owner.id, "email": job.owner.email},
        "scheduleId": job.schedule_id,
        "templateId": job.crew.template_id,
        "createdAt": iso(job.created_at),
        "updatedAt": iso(job.updated_at),
    }


def job_public(job: Job) -> dict[str, Any]:
    """A job in full (``Job``): detail and the answers of its actions."""
    return _job_fields(
        job,
        prompt=job.prompt,
        result=job.result,
        blockedReason=job.blocked_reason,
        feedback=job.feedback,
    )


def summaries_query() -> peewee.ModelSelect[Job]:
    """Like :func:`jobs_query`, but the long texts are read as previews
    (``*_preview``) and lengths (``*_chars``), never whole: what
    :func:`job_summary` shows."""
    columns = [
        Job.id, Job.crew, Job.owner, Job.schedule, Job.key, Job.title, Job.agent,
        Job.artifact_name, Job.status, Job.scheduled_at, Job.available_at, Job.timeout_s,
        Job.max_retries, Job.attempts, Job.cancel_requested, Job.created_at, Job.updated_at,
    ]  # fmt: skip
    texts = []
    for name, field in (
        ("prompt", Job.prompt),
        ("result", Job.result),
        ("blocked_reason", Job.blocked_reason),
        ("feedback", Job.feedback),
    ):
        texts.append(peewee.fn.substr(field, 1, PREVIEW_CHARS).alias(f"{name}_preview"))
    texts.append(peewee.fn.length(Job.prompt).coerce(False).alias("prompt_chars"))
    texts.append(peewee.fn.length(Job.result).coerce(False).alias("result_chars"))
    return (
        Job.select(*columns, *texts, User.id, User.email, Crew.id, Crew.template_id)
        .join(User, on=(Job.owner == User.id))
        .switch(Job)
        .join(Crew, on=(Job.crew == Crew.id))
        .switch(Job)
    )


def job_summary(job: Job) -> dict[str, Any]:
    """A job as lists and the change feed show it (``JobSummary``): a job
    read by :func:`summaries_query`, its long texts as previews."""
    texts = vars(job)  # the previews and lengths the query read, by their aliases
    return _job_fields(
        job,
        promptPreview=texts["prompt_preview"] or "",
        promptChars=texts["prompt_chars"] or 0,
        resultPreview=texts["result_preview"],
        resultChars=texts["result_chars"] or 0,
        blockedReason=texts["blocked_reason_preview"],
        feedback=texts["feedback_preview"],
    )


def run_public(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "jobId": run.job_id,
        "attempt": run.attempt,
        "outcome": run.outcome,
        "exitCode": run.exit_code,
        "pid": run.pid,
        "supervisorId": run.supervisor_id,
        "startedAt": iso(run.started_at),
        "endedAt": iso(run.ended_at),
        "durationS": run.duration_s,
        "error": run.error,
        "artifact": run.artifact,
    }


def comment_public(comment: Comment) -> dict[str, Any]:
    return {
        "id": comment.id,
        "jobId": comment.job_id,
        "author": {"id": comment.author.id, "email": comment.author.email},
        "text": comment.text,
        "createdAt": iso(comment.created_at),
    }


# --- single things ------------------------------------------------------------


def get_job(job_id: int) -> Job:
    job = jobs_query().where(Job.id == job_id).first()
    if job is None:
        raise NotFound("no such job")
    return job


def job_exists(job_id: int) -> bool:
    return Job.select().where(Job.id == job_id).exists()


def get_comment(comment_id: int) -> Comment:
    return (
        Comment.select(Comment, User.id, User.email)
        .join(User, on=(Comment.author == User.id))
        .where(Comment.id == comment_id)
        .get()
    )


def latest_run(job_id: int) -> Run | None:
    return Run.select().where(Run.job == job_id).order_by(Run.id.desc()).first()


def runs_newest_first(job_id: int, limit: int = 20) -> list[Run]:
    return list(Run.select().where(Run.job == job_id).order_by(Run.id.desc()).limit(limit))


def run_belongs_to(run_id: int, job_id: int) -> bool:
    return Run.select().where((Run.id == run_id) & (Run.job == job_id)).exists()


def run_outcome(run_id: int) -> str | None:
    """The run's outcome, or None if the run no longer exists."""
    row = Run.select(Run.outcome).where(Run.id == run_id).first()
    return row.outcome if row else None


def count_ready(*, now: datetime) -> int:
    """Jobs a dispatcher could claim right now (for the dispatcher status)."""
    return (
        Job.select()
        .where(
            (Job.status == JobStatus.READY)
            & (Job.available_at <= now)
            & (Job.cancel_requested == False)  # noqa: E712 - peewee expression
        )
        .count()
    )


# --- the job list -------------------------------------------------------------


def encode_cursor(job_id: int) -> str:
    return base64.urlsafe_b64encode(f"jobs:{job_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a page continues below; ValidationFailed for anything this list
    did not hand out."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "jobs" or not number.isdigit() or len(number) > 18:
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed(
            "the cursor is not one this list handed out",
            {"cursor": "is not a cursor from this list"},
        ) from None


def _search(query: peewee.ModelSelect[Job], text: str | None) -> peewee.ModelSelect[Job]:
    """Only jobs whose title, template id or owner's email holds ``text``
    (case-insensitive, a plain substring: ``%`` and ``_`` match themselves)."""
    if not text:
        return query
    return query.where(
        Job.title.contains(text) | Crew.template_id.contains(text) | User.email.contains(text)
    )


def list_jobs(
    viewer: Principal,
    status: str | None = None,
    mine: bool | None = None,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
    q: str | None = None,
) -> tuple[list[Job], str | None]:
    """One page of the board, newest first, as summaries (for
    :func:`job_summary`), and the cursor of the next page (None on the
    last). Non-admins see only their own jobs; admins see all unless ``mine``.
    ``q`` keeps the jobs whose title, template or owner's email holds it.

    A page is one short range scan per status on the ``(owner, status, id)``
    or ``(status, id)`` index, merged here, so its cost does not grow with
    the size of the board (a search reads on down the index until the page
    is full).
    """
    limit = max(1, min(limit, MAX_PAGE))
    below = decode_cursor(cursor) if cursor else None
    statuses: Sequence[str] = (status,) if status else LISTED_BY_DEFAULT
    owner_id = viewer.user_id if (mine or not viewer.is_admin) else None
    found: list[Job] = []
    for each in statuses:
        query = _search(summaries_query().where(Job.status == each), q)
        if owner_id is not None:
            query = query.where(Job.owner == owner_id)
        if below is not None:
            query = query.where(Job.id < below)
        found.extend(query.order_by(Job.id.desc()).limit(limit + 1))
    found.sort(key=lambda job: job.id, reverse=True)
    page = found[:limit]
    more = len(found) > limit
    return page, (encode_cursor(page[-1].id) if more and page else None)


def count_jobs(viewer: Principal, mine: bool | None = None, q: str | None = None) -> dict[str, int]:
    """How many jobs each status column holds, as :func:`list_jobs` would
    list them (every status, archived included, 0 where none). Without a
    search it is one ``GROUP BY status`` that SQLite answers from the
    ``(owner, status, id)`` or ``(status, id)`` index alone."""
    owner_id = viewer.user_id if (mine or not viewer.is_admin) else None
    query = Job.select(Job.status, peewee.fn.COUNT(Job.id).alias("n"))
    if q:
        query = _search(
            query.join(User, on=(Job.owner == User.id))
            .switch(Job)
            .join(Crew, on=(Job.crew == Crew.id))
            .switch(Job),
            q,
        )
    if owner_id is not None:
        query = query.where(Job.owner == owner_id)
    counts = {status.value: 0 for status in JobStatus}
    for row in query.group_by(Job.status).tuples().execute():
        status, n = cast("tuple[str, int]", row)
        counts[str(status)] = int(n)
    return counts


def jobs_by_id(job_ids: Iterable[int], *, summaries: bool = False) -> dict[int, Job]:
    """The jobs with these ids, whole (or as summaries, for :func:`job_summary`)."""
    ids = sorted(set(job_ids))
    query = summaries_query() if summaries else jobs_query()
    found: dict[int, Job] = {}
    for start in range(0, len(ids), CHUNK):
        for job in query.where(Job.id.in_(ids[start : start + CHUNK])):
            found[job.id] = job
    return found


# --- detail and graph ---------------------------------------------------------


def parent_ids(job_id: int) -> list[int]:
    return sorted(
        edge.parent_id for edge in JobEdge.select(JobEdge.parent).where(JobEdge.child == job_id)
    )


def job_detail(job: Job) -> dict[str, Any]:
    """Everything the job page shows: the job, its runs, its latest events
    and its comments (each oldest first) and its parents' results."""
    runs = Run.select().where(Run.job == job.id).order_by(Run.id)
    events = list(
        Event.select().where(Event.job == job.id).order_by(Event.id.desc()).limit(DETAIL_EVENTS)
    )
    comments = (
        Comment.select(Comment, User.id, User.email)
        .join(User, on=(Comment.author == User.id))
        .where(Comment.job == job.id)
        .order_by(Comment.id)
    )
    parents = Job.select().where(Job.id.in_(parent_ids(job.id))).order_by(Job.id)
    return {
        "job": job_public(job),
        "runs": [run_public(run) for run in runs],
        "events": [event_public(event) for event in reversed(events)],
        "comments": [comment_public(comment) for comment in comments],
        "parentResults": [
            {
                "jobId": parent.id,
                "key": parent.key,
                "title": parent.title,
                "status": parent.status,
                "result": parent.result,
            }
            for parent in parents
        ],
    }


def dependency_order(ids: Iterable[int], edges: Iterable[tuple[int, int]]) -> list[int]:
    """``ids`` with every job after all of its parents; ties by id."""
    children: dict[int, list[int]] = defaultdict(list)
    pending = dict.fromkeys(ids, 0)
    for parent, child in edges:
        if parent in pending and child in pending:
            children[parent].append(child)
            pending[child] += 1
    order: list[int] = []
    ready = sorted(i for i, n in pending.items() if n == 0)
    while ready:
        current = ready.pop(0)
        order.append(current)
        for child in children[current]:
            pending[child] -= 1
            if pending[child] == 0:
                ready.append(child)
        ready.sort()
    placed = set(order)
    return order + sorted(i for i in pending if i not in placed)  # a cycle, never written


def crew_graph(job: Job) -> dict[str, Any]:
    """The job's whole crew, parents first, with the dependency edges."""
    jobs = {j.id: j for j in Job.select().where(Job.crew == job.crew_id)}
    edges = sorted(
        (edge.parent_id, edge.child_id)
        for edge in JobEdge.select().where(JobEdge.child.in_(list(jobs)))
        if edge.parent_id in jobs
    )
    return {
        "crewId": job.crew_id,
        "nodes": [
            {
                "id": jobs[i].id,
                "key": jobs[i].key,
                "title": jobs[i].title,
                "status": jobs[i].status,
                "agent": jobs[i].agent,
            }
            for i in dependency_order(jobs, edges)
        ],
        "edges": [{"from": parent, "to": child} for parent, child in edges],
    }


# --- the change feed ----------------------------------------------------------


def events_after(
    viewer: Principal, after: int, limit: int = 500, *, mine: bool = False
) -> list[Event]:
    """The change feed from position ``after`` on (see
    :func:`~crewboard.board.events.feed_position`), scoped like the job list:
    a non-admin (or an admin asking for ``mine``) sees the events of their
    own jobs and schedules."""
    position = feed_position()
    query = Event.select().where(position > after)
    if mine or not viewer.is_admin:
        query = query.where(Event.owner == viewer.user_id)
    return list(query.order_by(position).limit(limit))


def all_events_after(after: int, limit: int = 500) -> list[Event]:
    """Every event after position ``after``, for the feed's one shared poller."""
    position = feed_position()
    return list(Event.select().where(position > after).order_by(position).limit(limit))


def last_event_position() -> int:
    """The change feed's newest position: where "from now" starts."""
    return Event.select(peewee.fn.MAX(feed_position())).scalar() or 0


def board_changes(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Events as the change feed sends them: each with its feed position and
    its job's summary as it is now (null once the job is deleted)."""
    jobs = jobs_by_id((e.job_id for e in events if e.job_id is not None), summaries=True)
    return [
        {
            **event_public(event),
            "position": position_of(event),
            "job": job_summary(jobs[event.job_id]) if event.job_id in jobs else None,
        }
        for event in events
    ]
