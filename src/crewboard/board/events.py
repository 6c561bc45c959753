"""Job and schedule events: every state change, with who did it and when.
They feed the job timeline and the board's change feed.

The change feed pages events by :func:`feed_position`, which follows commit
order: on PostgreSQL each event is numbered as its transaction commits, and
the same commit notifies :data:`~crewboard.board.notify.BOARD`, so every
node's followers look again (the board's trigger does both: see migration
``_v7_event_positions``); on SQLite, whose writers take turns, the id.

:class:`EventKind` names every kind the board records; the stored strings
are part of the API (``openapi.yaml``'s ``Event.kind``), so they never change.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any

import peewee

from crewboard.board import db
from crewboard.board.db import execute
from crewboard.board.models import Event, Job, Schedule
from crewboard.clock import iso

SUPERVISOR = "supervisor"
SCHEDULER = "scheduler"


class EventKind(StrEnum):
    """What an event records. Job and schedule events share ``created``."""

    # People's actions on jobs (crewboard.board.jobs)
    CREATED = "created"  # a job was made, with its crew; or a user made a schedule
    COMMENT = "comment"  # someone commented on a job
    UNBLOCK = "unblock"  # a blocked job was sent back to the queue
    REDO = "redo"  # a done or blocked job was re-queued with feedback
    STATUS = "status"  # a descendant of a redone job went back to waiting
    ARCHIVE = "archive"  # a job was soft-deleted
    UNARCHIVE = "unarchive"  # an archived job was restored to its former status
    CANCEL = "cancel"  # a waiting or ready job was taken off the queue
    CANCEL_REQUESTED = "cancel_requested"  # the supervisor is asked to stop a job's run
    DELETED = "deleted"  # jobs were deleted (jobIds in data; the event has no job)
    # The supervisor's runs of jobs (crewboard.board.dispatch, crewboard.board.recovery)
    READY = "ready"  # a job's parents are done (and its scheduled time reached)
    DISPATCHED = "dispatched"  # claimed by a supervisor; a run was created
    RUN_STARTED = "run_started"  # the runner process is up
    RUN_ENDED = "run_ended"  # a run ended (or recovery closed it), with its outcome
    DONE = "done"  # the job finished with a result
    RETRY = "retry"  # a failed run will be retried after a backoff
    REQUEUED = "requeued"  # an interrupted run: back to ready, no retry used
    BLOCKED = "blocked"  # the job needs a person
    # A run's saved file kept only in its host's home (crewboard.board.artifacts)
    ARTIFACT_NOT_STORED = "artifact_not_stored"
    # Webhooks of a job's or its crew's finish (crewboard.board.webhooks)
    WEBHOOK_QUEUED = "webhook_queued"  # a delivery was queued by the job's settling
    WEBHOOK_DELIVERED = "webhook_delivered"  # the receiver accepted an attempt (2xx)
    WEBHOOK_FAILED = "webhook_failed"  # an attempt failed; retried after a backoff
    WEBHOOK_GAVE_UP = "webhook_gave_up"  # no attempt left within a day: not delivered
    # Schedules (crewboard.board.schedules)
    UPDATED = "updated"  # a user edited a schedule
    ENABLED = "enabled"  # a user resumed a schedule
    DISABLED = "disabled"  # a user paused it (or the scheduler, for a rule it cannot read)
    RUN_NOW = "run_now"  # a user spawned a crew outside the rule
    FIRED = "fired"  # a fire time spawned a crew
    COALESCED = "coalesced"  # several fire times missed while down became one crew
    SKIPPED = "skipped"  # overlap skip: an earlier crew was still active
    FIRE_FAILED = "fire_failed"  # the template or inputs no longer make a crew


def record_event(
    kind: EventKind,
    *,
    job: Job | None = None,
    schedule: Schedule | None = None,
    actor: str,
    message: str = "",
    data: dict[str, Any] | None = None,
    now: datetime,
) -> Event:
    """Append an event; call inside the transaction that made the change, so
    the change and its record commit together (and, on PostgreSQL, the
    feed's followers on every node are told at that commit)."""
    owner_id = job.owner_id if job is not None else (schedule.owner_id if schedule else None)
    return Event.create(
        job=job,
        schedule=schedule,
        owner=owner_id,
        kind=kind,
        actor=actor,
        message=message,
        data=data or {},
        created_at=now,
    )


# One row of ``record_events``: (job_id, owner_id, kind, message, data).
EventRow = tuple[int, int, EventKind, str, dict[str, Any]]
_EVENT_ROW = "(?, ?, ?, ?, ?, json(?), ?)"
_INSERT_EVENTS = (
    'INSERT INTO "event" (job_id, owner_id, kind, actor, message, data, created_at) VALUES '
)


def record_events(rows: list[EventRow], *, actor: str, now: datetime) -> list[int]:
    """Append job events by one actor in one prepared statement (the hot
    transitions' form of :func:`record_event`); call inside the transaction
    that made the changes. Returns their ids, in the order of ``rows``."""
    if not rows:
        return []
    params: list[Any] = []
    created_at = Event.created_at.db_value(now)
    for job_id, owner_id, kind, message, data in rows:
        params += [job_id, owner_id, str(kind), actor, message, json.dumps(data), created_at]
    sql = _INSERT_EVENTS + ", ".join([_EVENT_ROW] * len(rows)) + " RETURNING id"
    # One statement's rows get ascending ids; RETURNING lists them in no set order.
    return sorted(event_id for (event_id,) in execute(sql, params))


def feed_position() -> peewee.Field:
    """The column the change feed is ordered and resumed by: one that grows
    in commit order, so a follower that has read up to a position never
    misses an event below it."""
    return Event.id if db.is_sqlite() else Event.position


def position_of(event: Event) -> int:
    """``event``'s place in the change feed (see :func:`feed_position`), as
    anyone but its own writing transaction reads it: on PostgreSQL it is
    numbered only as that transaction commits."""
    return event.id if event.position is None else event.position


def user_actor(user_id: int) -> str:
    return f"user:{user_id}"


def event_public(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "jobId": event.job_id,
        "scheduleId": event.schedule_id,
        "kind": event.kind,
        "actor": event.actor,
        "message": event.message,
        "data": event.data,
        "createdAt": iso(event.created_at),
    }
