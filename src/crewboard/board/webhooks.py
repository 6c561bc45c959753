"""Webhook deliveries kept in the board, and each user's signing secret.

A delivery is queued by :func:`queue_finished` inside the very transaction
that settles a job (done or blocked), so a finish and its delivery commit
together or not at all; when that job was the last of its crew to settle, the
crew's own delivery is queued with it. ``UNIQUE(dedupe_key)`` (the settling
event's id) makes each finish queue at most one delivery of each kind.

The supervisor's sender (:mod:`crewboard.supervisor.webhooks`) takes due
deliveries with :func:`claim_due`: a guarded update moves a row's
``next_attempt_at`` a lease ahead and names the claimer, so two supervisors
never send one delivery at once, and a sender that dies mid-send leaves the
row due again when the lease runs out (at-least-once: the receiver may see
an attempt twice, always with the same ``webhook-id``). :func:`record_attempt`
writes the outcome, the next try after an exponential backoff with jitter
(:func:`retry_delay_s`), or gives up a day after the finish. Each attempt
and outcome is an event on the job's timeline.

Every user signs with their own secret (:func:`signing_secret`), which only
they can read or rotate, so no user can forge deliveries to another's
receiver.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee

from crewboard.board.db import execute, is_sqlite, write
from crewboard.board.events import SUPERVISOR, EventKind, record_event
from crewboard.board.models import (
    Crew,
    DeliveryStatus,
    Job,
    JobEdge,
    JobStatus,
    WebhookDelivery,
    WebhookSecret,
)
from crewboard.clock import iso
from crewboard.webhooks import new_message_id, new_secret

JOB_FINISHED = "job.finished"
CREW_FINISHED = "crew.finished"
# A job's result rides in its delivery up to this many characters; the job's
# page has the whole of it.
MAX_RESULT_CHARS = 64_000
MAX_ERROR_CHARS = 500
# After a rotation the old secret signs too (a second ``v1,`` signature) for
# this long, so receivers still holding it keep accepting deliveries.
ROTATION_OVERLAP = timedelta(days=1)


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed delivery is retried: ``base_s`` doubling per failure up
    to ``cap_s``, each delay spread ±``jitter`` (a fraction) so receivers that
    come back are not hit by every sender at once; no attempt later than
    ``give_up_s`` after the delivery was queued."""

    base_s: float = 5.0
    cap_s: float = 3600.0
    give_up_s: float = 86400.0
    jitter: float = 0.25


def retry_delay_s(failures: int, policy: RetryPolicy, spread: float) -> float:
    """Seconds before the attempt after the ``failures``-th failure;
    ``spread`` in [0, 1) picks where in the jitter band it falls (the caller
    draws it at random; tests pass it)."""
    if failures < 1:
        return 0.0
    delay = min(policy.cap_s, policy.base_s * 2 ** min(failures - 1, 64))
    return delay * (1 - policy.jitter + 2 * policy.jitter * spread)


# -- signing secrets -------------------------------------------------------------


@write
def signing_secret(user_id: int, *, now: datetime) -> WebhookSecret:
    """The user's signing secret, made on first use."""
    WebhookSecret.insert(
        user=user_id, secret=new_secret(), created_at=now
    ).on_conflict_ignore().execute()
    return WebhookSecret.get(WebhookSecret.user == user_id)


@write
def rotate_secret(user_id: int, *, now: datetime) -> WebhookSecret:
    """A new signing secret for the user; deliveries sent from now on are
    signed with it, including retries of earlier ones, and for
    :data:`ROTATION_OVERLAP` with the old one as well."""
    row = signing_secret(user_id, now=now)
    WebhookSecret.update(secret=new_secret(), previous_secret=row.secret, created_at=now).where(
        WebhookSecret.id == row.id
    ).execute()
    return WebhookSecret.get_by_id(row.id)


def signing_keys(row: WebhookSecret, *, now: datetime) -> tuple[str, ...]:
    """The secrets a delivery is signed with now: the current one, and the
    one it replaced while the rotation overlap lasts."""
    if row.previous_secret and now < row.created_at + ROTATION_OVERLAP:
        return (row.secret, row.previous_secret)
    return (row.secret,)


def secret_public(row: WebhookSecret) -> dict[str, Any]:
    return {"secret": row.secret, "createdAt": iso(row.created_at)}


# -- queueing, in the settling transaction -----------------------------------------


def _job_data(job: Job, crew: Crew, status: str, now: datetime) -> dict[str, Any]:
    result = job.result if status == JobStatus.DONE else None
    truncated = result is not None and len(result) > MAX_RESULT_CHARS
    return {
        "jobId": job.id,
        "crewId": crew.id,
        "key": job.key,
        "title": job.title,
        "templateId": crew.template_id,
        "status": status,
        "result": result[:MAX_RESULT_CHARS] if result is not None else None,
        "resultTruncated": truncated,
        "blockedReason": job.blocked_reason if status == JobStatus.BLOCKED else None,
        "finishedAt": iso(now),
    }


def _crew_outcome(crew_id: int) -> str | None:
    """``done`` or ``blocked`` once nothing in the crew can move on without a
    person, else None: no job ready or running, and no waiting job whose
    parents are all done (it will still run). A job archived after it was
    done counts as done."""
    jobs = {
        j.id: (j.status_before_archive if j.status == JobStatus.ARCHIVED else j.status)
        for j in Job.select(Job.id, Job.status, Job.status_before_archive).where(
            Job.crew == crew_id
        )
    }
    if any(s in (JobStatus.READY, JobStatus.RUNNING) for s in jobs.values()):
        return None
    parents: dict[int, list[int]] = {}
    for edge in JobEdge.select(JobEdge.parent, JobEdge.child).where(JobEdge.child.in_(list(jobs))):
        parents.setdefault(edge.child_id, []).append(edge.parent_id)
    for job_id, status in jobs.items():
        if status == JobStatus.WAITING and all(
            jobs.get(p) == JobStatus.DONE for p in parents.get(job_id, [])
        ):
            return None
    return JobStatus.DONE if all(s == JobStatus.DONE for s in jobs.values()) else JobStatus.BLOCKED


def _crew_data(crew: Crew, status: str, now: datetime) -> dict[str, Any]:
    jobs = Job.select(Job.id, Job.key, Job.title, Job.status).where(Job.crew == crew.id)
    return {
        "crewId": crew.id,
        "title": crew.title,
        "templateId": crew.template_id,
        "status": status,
        "jobs": [
            {"jobId": j.id, "key": j.key, "title": j.title, "status": j.status}
            for j in jobs.order_by(Job.id)
        ],
        "finishedAt": iso(now),
    }


def _queue(
    job: Job, url: str, event_type: str, dedupe_key: str, data: dict[str, Any], now: datetime
) -> None:
    body = json.dumps(
        {"type": event_type, "timestamp": iso(now), "data": data},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    inserted = (
        WebhookDelivery.insert(
            message_id=new_message_id(),
            dedupe_key=dedupe_key,
            owner=job.owner_id,
            job=job.id,
            event_type=event_type,
            url=url,
            body=body,
            status=DeliveryStatus.PENDING,
            next_attempt_at=now,
            created_at=now,
        )
        .on_conflict_ignore()
        .execute()
    )
    if inserted:
        record_event(
            EventKind.WEBHOOK_QUEUED,
            job=job,
            actor=SUPERVISOR,
            message=f"{event_type} webhook queued for {url}",
            data={"eventType": event_type, "url": url},
            now=now,
        )


# The crew's webhook URL, read on every job's settling. Hand-written, as the
# hot transitions in crewboard.board.dispatch are: most crews name no URL, and
# building this through peewee cost more than the rest of the settling.
_CREW_WEBHOOK_URL = "SELECT webhook_url FROM crew WHERE id = ?"


def queue_finished(job: Job, status: str, settled_event_id: int, *, now: datetime) -> bool:
    """Queue the webhooks a job's settling owes, if its crew names a URL:
    ``job.finished`` when it is done or blocked, and ``crew.finished`` when it
    was the last of its crew to settle. Call inside the transaction that
    settled it, with the id of the event that recorded it (which makes each
    delivery's key, so a settling queues each at most once). True if it
    queued a delivery (a sender then has something to send)."""
    if status not in (JobStatus.DONE, JobStatus.BLOCKED):
        return False
    sqlite = is_sqlite()
    # Two jobs of one crew settling at once on PostgreSQL: one waits for the
    # other here (FOR UPDATE), so the second sees the first settled and the
    # crew's delivery is queued once, by whichever commits last.
    row = execute(_CREW_WEBHOOK_URL + ("" if sqlite else " FOR UPDATE"), (job.crew_id,)).fetchone()
    if row is None or not row[0]:
        return False
    url: str = row[0]
    crew = Crew.get_by_id(job.crew_id)
    fresh = Job.get_by_id(job.id)
    data = _job_data(fresh, crew, status, now)
    _queue(fresh, url, JOB_FINISHED, f"job:{settled_event_id}", data, now)
    outcome = _crew_outcome(crew.id)
    if outcome is not None:
        crew_data = _crew_data(crew, outcome, now)
        _queue(fresh, url, CREW_FINISHED, f"crew:{settled_event_id}", crew_data, now)
    return True


def forget_jobs(job_ids: list[int]) -> None:
    """Jobs are being deleted: their finished deliveries go with them, while
    pending ones are still sent (they no longer point at a job)."""
    WebhookDelivery.delete().where(
        WebhookDelivery.job.in_(job_ids) & (WebhookDelivery.status != DeliveryStatus.PENDING)
    ).execute()
    WebhookDelivery.update(job=None).where(WebhookDelivery.job.in_(job_ids)).execute()


# -- sending ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """A delivery a sender has claimed, with what one attempt needs."""

    id: int
    message_id: str
    url: str
    body: bytes
    attempt: int  # 1 for the first
    secrets: tuple[str, ...]  # the owner's signing secrets at the time of the claim
    event_type: str


@write
def claim_due(
    supervisor_id: str, *, now: datetime, lease_s: float, limit: int = 8
) -> list[Outgoing]:
    """Take up to ``limit`` deliveries due by ``now`` for ``supervisor_id``:
    each is moved ``lease_s`` ahead, so no other sender takes it while this
    one sends, and so it is due again should this one die."""
    query = (
        WebhookDelivery.select()
        .where(
            (WebhookDelivery.status == DeliveryStatus.PENDING)
            & (WebhookDelivery.next_attempt_at <= now)
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    if not is_sqlite():
        query = query.for_update(skip_locked=True)
    claimed = []
    for row in list(query):
        taken = (
            WebhookDelivery.update(
                next_attempt_at=now + timedelta(seconds=lease_s), claimed_by=supervisor_id
            )
            .where(
                (WebhookDelivery.id == row.id)
                & (WebhookDelivery.status == DeliveryStatus.PENDING)
                & (WebhookDelivery.next_attempt_at <= now)
            )
            .execute()
        )
        if not taken:
            continue
        keys = signing_keys(signing_secret(row.owner_id, now=now), now=now)
        claimed.append(
            Outgoing(
                id=row.id,
                message_id=row.message_id,
                url=row.url,
                body=row.body.encode(),
                attempt=row.attempts + 1,
                secrets=keys,
                event_type=row.event_type,
            )
        )
    return claimed


@write
def release(delivery_id: int, supervisor_id: str, *, now: datetime) -> bool:
    """Hand a claimed delivery back unsent (its sender is stopping): due now,
    for whichever sender looks next."""
    return bool(
        WebhookDelivery.update(next_attempt_at=now, claimed_by=None)
        .where(
            (WebhookDelivery.id == delivery_id)
            & (WebhookDelivery.status == DeliveryStatus.PENDING)
            & (WebhookDelivery.claimed_by == supervisor_id)
        )
        .execute()
    )


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


@write
def record_attempt(
    delivery_id: int,
    supervisor_id: str,
    *,
    error: str | None,
    policy: RetryPolicy,
    spread: float,
    now: datetime,
) -> str | None:
    """Write the outcome of a claimed attempt: delivered (``error`` None),
    or failed and retried after a backoff, or failed for good once the next
    try would come more than ``policy.give_up_s`` after the delivery was
    queued. Returns the delivery's new status; None, changing nothing, if the
    claim was lost (the lease ran out and another sender took it over)."""
    row = WebhookDelivery.get_or_none(WebhookDelivery.id == delivery_id)
    if row is None or row.status != DeliveryStatus.PENDING or row.claimed_by != supervisor_id:
        return None
    attempts = row.attempts + 1
    changes: dict[str, Any] = {"attempts": attempts, "claimed_by": None}
    data: dict[str, Any] = {
        "deliveryId": row.id,
        "webhookId": row.message_id,
        "eventType": row.event_type,
        "attempt": attempts,
    }
    what = f"{row.event_type} webhook to {row.url}"
    if error is None:
        status, kind = DeliveryStatus.DELIVERED, EventKind.WEBHOOK_DELIVERED
        changes.update(status=status, finished_at=now, last_error=None)
        message = f"{what} delivered (attempt {attempts})"
    else:
        changes["last_error"] = _clip(error)
        data["error"] = changes["last_error"]
        delay_s = retry_delay_s(attempts, policy, spread)
        retry_at = now + timedelta(seconds=delay_s)
        if retry_at > row.created_at + timedelta(seconds=policy.give_up_s):
            status, kind = DeliveryStatus.FAILED, EventKind.WEBHOOK_GAVE_UP
            changes.update(status=status, finished_at=now)
            message = f"{what} given up after {attempts} attempts: {changes['last_error']}"
        else:
            status, kind = DeliveryStatus.PENDING, EventKind.WEBHOOK_FAILED
            changes["next_attempt_at"] = retry_at
            data["retryAt"] = iso(retry_at)
            message = (
                f"{what} failed (attempt {attempts}): {changes['last_error']}; "
                f"retry in {delay_s:.0f} s"
            )
    updated = (
        WebhookDelivery.update(**changes)
        .where(
            (WebhookDelivery.id == delivery_id)
            & (WebhookDelivery.status == DeliveryStatus.PENDING)
            & (WebhookDelivery.claimed_by == supervisor_id)
        )
        .execute()
    )
    if not updated:
        return None
    job = Job.get_or_none(Job.id == row.job_id) if row.job_id is not None else None
    if job is not None:
        record_event(kind, job=job, actor=SUPERVISOR, message=message, data=data, now=now)
    return status


@write
def record_attempts(
    supervisor_id: str,
    outcomes: dict[int, tuple[str | None, float]],
    *,
    policy: RetryPolicy,
    now: datetime,
) -> dict[int, str | None]:
    """:func:`record_attempt` for a sender's batch in one transaction:
    ``outcomes`` maps each delivery to its error (None: delivered) and the
    spread of its backoff. Returns each delivery's new status (None: claim lost)."""
    return {
        delivery_id: record_attempt(
            delivery_id, supervisor_id, error=error, policy=policy, spread=spread, now=now
        )
        for delivery_id, (error, spread) in outcomes.items()
    }


def next_due_at() -> datetime | None:
    """When the earliest pending delivery comes due (perhaps already)."""
    raw = (
        WebhookDelivery.select(peewee.fn.MIN(WebhookDelivery.next_attempt_at))
        .where(WebhookDelivery.status == DeliveryStatus.PENDING)
        .scalar()
    )
    return WebhookDelivery.next_attempt_at.python_value(raw) if raw is not None else None


def deliveries_of(job_id: int) -> list[WebhookDelivery]:
    """The deliveries a job's settling queued, oldest first."""
    return list(
        WebhookDelivery.select().where(WebhookDelivery.job == job_id).order_by(WebhookDelivery.id)
    )
