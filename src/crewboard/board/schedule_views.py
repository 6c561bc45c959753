"""Reading schedules: the JSON shape behind ``/api/schedules``, the lists and
pages users see, and what the scheduler asks of the board (which schedules
are due, when the next fire is, how many of a schedule's jobs are active).

Nothing here writes; the changes of state are in
:mod:`crewboard.board.schedules`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from crewboard.board import job_views
from crewboard.board.models import Job, JobStatus, Schedule, ScheduleFire, User
from crewboard.board.users import Principal
from crewboard.clock import iso
from crewboard.errors import NotFound

# A crew of the schedule with a job in one of these keeps `overlap: skip` from firing.
ACTIVE_STATUSES = (JobStatus.WAITING, JobStatus.READY, JobStatus.RUNNING)


@dataclass(frozen=True)
class DueSchedule:
    """What the scheduler needs of a schedule whose fire time has come."""

    id: int
    rule: str
    timezone: str
    next_run_at: datetime


def schedule_public(schedule: Schedule) -> dict[str, Any]:
    """A schedule as the API shows it (``openapi.yaml``'s ``Schedule``)."""
    owner = schedule.owner
    return {
        "id": schedule.id,
        "name": schedule.name,
        "templateId": schedule.template_id,
        "inputs": schedule.inputs,
        "rule": schedule.rule,
        "timezone": schedule.timezone,
        "enabled": schedule.enabled,
        "overlap": schedule.overlap,
        "webhookUrl": schedule.webhook_url,
        "nextRunAt": iso(schedule.next_run_at),
        "lastRunAt": iso(schedule.last_run_at),
        "owner": {"id": owner.id, "email": owner.email},
        "createdAt": iso(schedule.created_at),
        "updatedAt": iso(schedule.updated_at),
    }


def _with_owner() -> peewee.ModelSelect[Schedule]:
    return Schedule.select(Schedule, User.id, User.email).join(User, on=(Schedule.owner == User.id))


def get_schedule(schedule_id: int) -> Schedule:
    schedule = _with_owner().where(Schedule.id == schedule_id).first()
    if schedule is None:
        raise NotFound("no such schedule")
    return schedule


def list_schedules(viewer: Principal, mine: bool = False) -> list[Schedule]:
    """Schedules oldest first: the viewer's own, or everyone's for an admin
    unless ``mine``."""
    query = _with_owner()
    if mine or not viewer.is_admin:
        query = query.where(Schedule.owner == viewer.user_id)
    return list(query.order_by(Schedule.id))


def list_schedule_jobs(
    schedule_id: int, limit: int = job_views.DEFAULT_PAGE, cursor: str | None = None
) -> tuple[list[Job], str | None]:
    """One page of the jobs the schedule spawned, newest first (archived ones
    included), as summaries (for :func:`~crewboard.board.job_views.job_summary`),
    and the cursor of the next page (None on the last)."""
    limit = max(1, min(limit, job_views.MAX_PAGE))
    query = job_views.summaries_query().where(Job.schedule == schedule_id)
    if cursor:
        query = query.where(Job.id < job_views.decode_cursor(cursor))
    found = list(query.order_by(Job.id.desc()).limit(limit + 1))
    page = found[:limit]
    more = len(found) > limit
    return page, (job_views.encode_cursor(page[-1].id) if more and page else None)


def due_schedules(*, now: datetime, limit: int = 100) -> list[DueSchedule]:
    """Enabled schedules whose next fire time has come by ``now``, earliest
    first. A disabled account's schedules do not fire."""
    query = (
        Schedule.select(Schedule.id, Schedule.rule, Schedule.timezone, Schedule.next_run_at)
        .join(User, on=(Schedule.owner == User.id))
        .where(Schedule.enabled & (Schedule.next_run_at <= now) & ~User.disabled)
        .order_by(Schedule.next_run_at, Schedule.id)
        .limit(limit)
    )
    return [DueSchedule(s.id, s.rule, s.timezone, s.next_run_at) for s in query]


def next_fire_at() -> datetime | None:
    """The earliest next fire time of any schedule that can fire, or None."""
    value = (
        Schedule.select(peewee.fn.MIN(Schedule.next_run_at))
        .join(User, on=(Schedule.owner == User.id))
        .where(Schedule.enabled & Schedule.next_run_at.is_null(False) & ~User.disabled)
        .scalar()
    )
    return Schedule.next_run_at.python_value(value)


def count_active_jobs(schedule_id: int) -> int:
    """Jobs of the schedule's crews still waiting, ready or running."""
    return (
        Job.select()
        .where((Job.schedule == schedule_id) & Job.status.in_(list(ACTIVE_STATUSES)))
        .count()
    )


def fires_of(schedule_id: int) -> list[ScheduleFire]:
    """Every fire time the schedule has dealt with, oldest first."""
    return list(
        ScheduleFire.select()
        .where(ScheduleFire.schedule == schedule_id)
        .order_by(ScheduleFire.fire_at)
    )
