"""Schedules' changes of state: what users do to a schedule (create, edit,
enable, disable, delete, run now) and what the scheduler does at a fire time
(:func:`record_schedule_fire`, :func:`disable_unreadable`). Each is one named
transaction.

A schedule's ``next_run_at`` is its next fire time in UTC, or NULL while it is
disabled. Each fire time the scheduler deals with leaves a ``ScheduleFire``
row; the table's ``UNIQUE(schedule_id, fire_at)`` is what makes a fire time
spawn at most one crew, across restarts and across supervisors. Crews are
written by :func:`crewboard.board.jobs.create_crew`, nested in the same
transaction as the fire or run-now that spawns them.

The transitions take what they write already made: changes checked by the
web (:mod:`crewboard.web.schedule_checks`), crews rendered by the caller
(:mod:`crewboard.workflows.crews`) before the transaction opens, so no
template is rendered while the write lock is held. Reading schedules is
:mod:`crewboard.board.schedule_views`; rules, zones and fire times come from
:mod:`crewboard.cron`. Every function that needs "now" takes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import peewee

from crewboard import cron, limits
from crewboard.board import jobs as board_jobs
from crewboard.board import usage
from crewboard.board.db import database, is_sqlite, write
from crewboard.board.events import SCHEDULER, EventKind, record_event, user_actor
from crewboard.board.models import Crew, Event, Job, Schedule, ScheduleFire
from crewboard.board.schedule_views import count_active_jobs
from crewboard.board.wake import wakes_supervisors
from crewboard.clock import iso
from crewboard.errors import NotFound
from crewboard.wakeup import JOBS, SCHEDULES
from crewboard.workflows import CrewPlan, RenderedCrew


class FireOutcome(StrEnum):
    """What :func:`record_schedule_fire` did with a fire time."""

    SPAWNED = "spawned"  # a crew was written
    SKIPPED = "skipped"  # overlap skip; no crew
    FAILED = "failed"  # the template is gone or refuses the inputs; no crew
    DUPLICATE = "duplicate"  # this fire time was already dealt with; nothing written
    STALE = "stale"  # the schedule changed (or went) since it was read; nothing written


@dataclass(frozen=True)
class FireResult:
    outcome: FireOutcome
    crew_id: int | None = None
    job_ids: tuple[int, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class ScheduleChanges:
    """Checked values for a new schedule or an edit; ``None`` means unchanged."""

    name: str | None = None
    template_id: str | None = None
    inputs: dict[str, Any] | None = None
    rule: str | None = None
    timezone: str | None = None
    overlap: str | None = None
    enabled: bool | None = None
    webhook_url: str | None = None  # "" removes it


# --- user intent --------------------------------------------------------------


def _locked(schedule_id: int) -> Schedule | None:
    """The schedule, read inside the current write transaction. SQLite's
    BEGIN IMMEDIATE already holds the write lock; PostgreSQL locks the row."""
    query = Schedule.select().where(Schedule.id == schedule_id)
    if not is_sqlite():
        query = query.for_update()
    return query.first()


@write
@wakes_supervisors(SCHEDULES)
def create_schedule(
    owner_id: int, changes: ScheduleChanges, *, max_schedules: int | None = None, now: datetime
) -> Schedule:
    """Write a checked new schedule; its first fire is the rule's first after
    ``now`` (none while disabled). LimitReached if the owner already has
    ``max_schedules``."""
    assert changes.name and changes.template_id and changes.rule and changes.timezone
    usage.check_room(limits.SCHEDULES, owner_id, max_schedules)
    enabled = True if changes.enabled is None else changes.enabled
    schedule = Schedule.create(
        owner=owner_id,
        name=changes.name,
        template_id=changes.template_id,
        inputs=changes.inputs or {},
        rule=changes.rule,
        timezone=changes.timezone,
        enabled=enabled,
        overlap=changes.overlap or "skip",
        webhook_url=changes.webhook_url or None,
        next_run_at=cron.next_fire(changes.rule, changes.timezone, now) if enabled else None,
        last_run_at=None,
        created_at=now,
        updated_at=now,
    )
    record_event(
        EventKind.CREATED,
        schedule=schedule,
        actor=user_actor(owner_id),
        message=f"schedule {changes.name!r} created",
        data={"nextRunAt": iso(schedule.next_run_at)},
        now=now,
    )
    return schedule


@write
@wakes_supervisors(SCHEDULES)
def update_schedule(
    schedule_id: int, user_id: int, changes: ScheduleChanges, *, now: datetime
) -> Schedule:
    """Apply a checked edit. A new rule or zone moves the next fire to the
    rule's first after ``now`` (if enabled); anything else leaves it."""
    schedule = _locked(schedule_id)
    if schedule is None:
        raise NotFound("no such schedule")
    changed: dict[str, Any] = {}
    for attr, value in (
        ("name", changes.name),
        ("template_id", changes.template_id),
        ("inputs", changes.inputs),
        ("rule", changes.rule),
        ("timezone", changes.timezone),
        ("overlap", changes.overlap),
        ("webhook_url", changes.webhook_url),
    ):
        if value is not None and (getattr(schedule, attr) or "") != value:
            changed[attr] = value or None
    if not changed:
        return schedule
    for attr, value in changed.items():
        setattr(schedule, attr, value)
    if schedule.enabled and ("rule" in changed or "timezone" in changed):
        schedule.next_run_at = cron.next_fire(schedule.rule, schedule.timezone, now)
    schedule.updated_at = now
    schedule.save()
    record_event(
        EventKind.UPDATED,
        schedule=schedule,
        actor=user_actor(user_id),
        message="changed " + ", ".join(sorted(changed)),
        data={"fields": sorted(changed), "nextRunAt": iso(schedule.next_run_at)},
        now=now,
    )
    return schedule


@write
@wakes_supervisors(SCHEDULES)
def enable_schedule(schedule_id: int, user_id: int, *, now: datetime) -> Schedule:
    """Resume: the next fire is the rule's first after ``now`` (fires missed
    while paused are not made up). Enabling an enabled schedule changes nothing."""
    schedule = _locked(schedule_id)
    if schedule is None:
        raise NotFound("no such schedule")
    if schedule.enabled:
        return schedule
    schedule.enabled = True
    schedule.next_run_at = cron.next_fire(schedule.rule, schedule.timezone, now)
    schedule.updated_at = now
    schedule.save()
    record_event(
        EventKind.ENABLED,
        schedule=schedule,
        actor=user_actor(user_id),
        message="schedule resumed",
        data={"nextRunAt": iso(schedule.next_run_at)},
        now=now,
    )
    return schedule


@write
def disable_schedule(schedule_id: int, user_id: int, *, now: datetime) -> Schedule:
    """Pause: no next fire until enabled again. Disabling a disabled
    schedule changes nothing."""
    schedule = _locked(schedule_id)
    if schedule is None:
        raise NotFound("no such schedule")
    if not schedule.enabled:
        return schedule
    schedule.enabled = False
    schedule.next_run_at = None
    schedule.updated_at = now
    schedule.save()
    record_event(
        EventKind.DISABLED,
        schedule=schedule,
        actor=user_actor(user_id),
        message="paused",
        now=now,
    )
    return schedule


@write
def delete_schedule(schedule_id: int) -> None:
    """Delete the schedule and its fire records; the crews and jobs it
    spawned stay, no longer linked to it."""
    # The foreign keys say as much, but say it here too so it does not
    # depend on the database enforcing them.
    Crew.update(schedule=None).where(Crew.schedule == schedule_id).execute()
    Job.update(schedule=None).where(Job.schedule == schedule_id).execute()
    ScheduleFire.delete().where(ScheduleFire.schedule == schedule_id).execute()
    Event.delete().where(Event.schedule == schedule_id).execute()
    if Schedule.delete().where(Schedule.id == schedule_id).execute() == 0:
        raise NotFound("no such schedule")


def _spawn(
    plan: CrewPlan, schedule: Schedule, actor: str, max_queued: int | None, now: datetime
) -> tuple[Crew, list[Job]]:
    # Nested in the caller's transaction: the crew commits with the fire or
    # run-now. Its jobs count against the schedule owner's queued jobs.
    return board_jobs.create_crew(
        plan,
        schedule.owner_id,
        schedule_id=schedule.id,
        title=schedule.name,
        actor=actor,
        max_queued=max_queued,
        webhook_url=schedule.webhook_url,
        now=now,
    )


@write
@wakes_supervisors(JOBS)
def run_schedule_now(
    schedule_id: int,
    user_id: int,
    *,
    plan: CrewPlan,
    max_queued: int | None = None,
    now: datetime,
) -> tuple[Crew, list[Job]]:
    """Spawn ``plan``, the crew rendered from the schedule's template and
    inputs, at once, enabled or not, whatever its overlap; the next fire
    stays where it was. LimitReached if its jobs would take the schedule's
    owner past ``max_queued``."""
    schedule = _locked(schedule_id)
    if schedule is None:
        raise NotFound("no such schedule")
    crew, jobs = _spawn(plan, schedule, user_actor(user_id), max_queued, now)
    record_event(
        EventKind.RUN_NOW,
        schedule=schedule,
        actor=user_actor(user_id),
        message=f"crew {crew.id} spawned now",
        data={"crewId": crew.id, "jobIds": [job.id for job in jobs]},
        now=now,
    )
    return crew, jobs


# --- the scheduler's transitions ----------------------------------------------


@write
def record_schedule_fire(
    schedule_id: int,
    fire_at: datetime,
    *,
    crew: RenderedCrew,
    due_from: datetime,
    next_run_at: datetime,
    missed: int = 1,
    max_queued: int | None = None,
    now: datetime,
) -> FireResult:
    """Deal with one fire time, all in one transaction.

    The caller read the schedule with ``next_run_at == due_from`` and worked
    out (:func:`crewboard.cron.due_fires`) that the fires from ``due_from`` up
    to ``now`` — ``missed`` of them, the latest ``fire_at`` — coalesce into
    one, and that the next is ``next_run_at``; and it rendered ``crew`` from
    the schedule's template and inputs. If the schedule has since been
    edited (its next fire, template or inputs), paused, deleted or fired by
    someone else, nothing is written (``STALE``). If ``fire_at`` was already
    dealt with, the unique key refuses the fire and nothing of it is written
    (``DUPLICATE``); the schedule still moves on to ``next_run_at``.
    Otherwise the fire is recorded and either spawns a crew linked to the
    schedule (``SPAWNED``, with a ``fired`` event and, when several fires
    coalesced, a ``coalesced`` event counting them), is skipped because
    ``overlap: skip`` and an earlier crew is still active (``SKIPPED``, with a
    ``skipped`` event), or fails because the template or inputs no longer
    make a crew or its jobs would take the owner past ``max_queued`` queued
    jobs (``FAILED``, with a ``fire_failed`` event)."""
    schedule = _locked(schedule_id)
    if (
        schedule is None
        or not schedule.enabled
        or schedule.next_run_at != due_from
        or (schedule.template_id, schedule.inputs) != (crew.template_id, crew.inputs)
    ):
        return FireResult(FireOutcome.STALE)
    # Decide first (reads only), so the fire's row is written once, final.
    active = count_active_jobs(schedule_id)
    skip = cron.should_skip_for_overlap(schedule.overlap, active)
    plan = None if skip else crew.plan
    problem = crew.problem
    if plan is not None:
        try:
            usage.check_room(limits.QUEUED_JOBS, schedule.owner_id, max_queued, len(plan.jobs))
        except limits.LimitReached as exc:
            plan, problem = None, exc.message
    outcome = FireOutcome.SKIPPED if skip else FireOutcome.SPAWNED if plan else FireOutcome.FAILED
    try:
        with database.atomic():  # a savepoint: a duplicate undoes only this insert
            fire = ScheduleFire.create(
                schedule=schedule_id,
                fire_at=fire_at,
                outcome=outcome,
                missed=missed,
                created_at=now,
            )
    except peewee.IntegrityError:
        outcome = FireOutcome.DUPLICATE
    # Move on past this fire time whatever came of it, so it is never retried.
    Schedule.update(next_run_at=next_run_at, last_run_at=fire_at).where(
        Schedule.id == schedule_id
    ).execute()
    when = {"fireAt": iso(fire_at), "missed": missed}
    if outcome is FireOutcome.DUPLICATE:
        return FireResult(outcome, detail="this fire time was already dealt with")
    if outcome is FireOutcome.SKIPPED:
        record_event(
            EventKind.SKIPPED,
            schedule=schedule,
            actor=SCHEDULER,
            message=f"skipped the fire at {iso(fire_at)}: an earlier crew still has "
            f"{active} job(s) waiting, ready or running (overlap: skip)",
            data={**when, "activeJobs": active},
            now=now,
        )
        return FireResult(outcome)
    if plan is None:
        record_event(
            EventKind.FIRE_FAILED,
            schedule=schedule,
            actor=SCHEDULER,
            message=f"the fire at {iso(fire_at)} made no crew: {problem}",
            data={**when, "reason": problem},
            now=now,
        )
        return FireResult(outcome, detail=problem or "")
    spawned, jobs = _spawn(plan, schedule, SCHEDULER, None, now)
    ScheduleFire.update(crew=spawned).where(ScheduleFire.id == fire.id).execute()
    job_ids = tuple(job.id for job in jobs)
    if missed > 1:
        record_event(
            EventKind.COALESCED,
            schedule=schedule,
            actor=SCHEDULER,
            message=f"{missed} fire times passed while the scheduler was not running "
            f"({iso(due_from)} to {iso(fire_at)}); they made one crew",
            data={**when, "firstFireAt": iso(due_from), "crewId": spawned.id},
            now=now,
        )
    record_event(
        EventKind.FIRED,
        schedule=schedule,
        actor=SCHEDULER,
        message=f"fired at {iso(fire_at)}: crew {spawned.id}",
        data={**when, "crewId": spawned.id, "jobIds": list(job_ids)},
        now=now,
    )
    return FireResult(outcome, spawned.id, job_ids)


@write
def disable_unreadable(schedule_id: int, due_from: datetime, reason: str, *, now: datetime) -> bool:
    """Pause a schedule whose stored rule or zone can no longer be read (a
    zone dropped from the tz database, say), or that cannot spawn from what
    it stores (inputs no crew can hold), so it does not fail every poll; the
    event says why. False if it changed meanwhile."""
    schedule = _locked(schedule_id)
    if schedule is None or not schedule.enabled or schedule.next_run_at != due_from:
        return False
    Schedule.update(enabled=False, next_run_at=None, updated_at=now).where(
        Schedule.id == schedule_id
    ).execute()
    record_event(
        EventKind.DISABLED,
        schedule=schedule,
        actor=SCHEDULER,
        message=f"paused: {reason}",
        data={"reason": reason},
        now=now,
    )
    return True
