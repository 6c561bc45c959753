"""Job and schedule events: every state change, with who did it and when.
They feed the job timeline and the board's change feed."""

from __future__ import annotations

from typing import Any

from crewboard.board.models import Event, Job, Schedule
from crewboard.clock import iso, utcnow

SUPERVISOR = "supervisor"
SCHEDULER = "scheduler"


def record_event(
    kind: str,
    *,
    job: Job | None = None,
    schedule: Schedule | None = None,
    actor: str,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> Event:
    """Append an event; call inside the transaction that made the change, so
    the change and its record commit together."""
    owner_id = job.owner_id if job is not None else (schedule.owner_id if schedule else None)
    return Event.create(
        job=job,
        schedule=schedule,
        owner=owner_id,
        kind=kind,
        actor=actor,
        message=message,
        data=data or {},
        created_at=utcnow(),
    )


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
