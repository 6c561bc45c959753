"""Schedules on the board: what users change (create, edit, enable, disable,
delete, run now), what the scheduler does at a fire time
(:func:`record_schedule_fire`), and the queries and JSON shape behind
``/api/schedules``.

A schedule's ``next_run_at`` is its next fire time in UTC, or NULL while it is
disabled. Each fire time the scheduler deals with leaves a ``ScheduleFire``
row; the table's ``UNIQUE(schedule_id, fire_at)`` is what makes a fire time
spawn at most one crew, across restarts and across supervisors. Crews are
written by :func:`crewboard.board.jobs.create_crew` inside the same
transaction as the fire that spawns them.

Rules, zones and fire times come from :mod:`crewboard.cron`; templates and
inputs from :mod:`crewboard.workflows`. Every function that needs "now" takes
it, so callers (and tests) own the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import peewee

from crewboard import cron
from crewboard.board import job_views
from crewboard.board import jobs as board_jobs
from crewboard.board.db import database, is_sqlite, write
from crewboard.board.events import SCHEDULER, record_event, user_actor
from crewboard.board.models import Crew, Event, Job, JobStatus, Schedule, ScheduleFire, User
from crewboard.board.users import Principal
from crewboard.clock import iso
from crewboard.errors import NotFound, ValidationFailed
from crewboard.workflows import CrewPlan, Template, plan_crew

MAX_NAME_CHARS = 200
# A crew of the schedule with a job in one of these keeps `overlap: skip` from firing.
ACTIVE_STATUSES = (JobStatus.WAITING, JobStatus.READY, JobStatus.RUNNING)


class ScheduleEvent(StrEnum):
    """Kinds of the events recorded on a schedule."""

    CREATED = "created"  # a user made the schedule
    UPDATED = "updated"  # a user edited it
    ENABLED = "enabled"  # a user resumed it
    DISABLED = "disabled"  # a user paused it (or the scheduler, for a rule it cannot read)
    RUN_NOW = "run_now"  # a user spawned a crew outside the rule
    FIRED = "fired"  # a fire time spawned a crew
    COALESCED = "coalesced"  # several fire times missed while down became one crew
    SKIPPED = "skipped"  # overlap skip: an earlier crew was still active
    FIRE_FAILED = "fire_failed"  # the template or inputs no longer make a crew


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
class DueSchedule:
    """What the scheduler needs of a schedule whose fire time has come."""

    id: int
    rule: str
    timezone: str
    next_run_at: datetime


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


# --- shape --------------------------------------------------------------------


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
        "nextRunAt": iso(schedule.next_run_at),
        "lastRunAt": iso(schedule.last_run_at),
        "owner": {"id": owner.id, "email": owner.email},
        "createdAt": iso(schedule.created_at),
        "updatedAt": iso(schedule.updated_at),
    }


# --- checking input -----------------------------------------------------------


def _inputs_fields(exc: ValidationFailed) -> dict[str, str]:
    """Input errors named as the API names them: ``inputs.<name>``."""
    return {
        (key if key in ("inputs", "templateId") else f"inputs.{key}"): message
        for key, message in exc.fields.items()
    }


def _template(templates: Mapping[str, Template], template_id: str) -> Template:
    template = templates.get(template_id)
    if template is None:
        raise ValidationFailed(
            f"no template {template_id[:100]!r}", {"templateId": "no such template"}
        )
    return template


def check_inputs(
    templates: Mapping[str, Template], template_id: str, inputs: Any
) -> dict[str, Any]:
    """``inputs`` as given, once the template exists, is valid and accepts them
    (and they render); ValidationFailed naming ``templateId`` or
    ``inputs.<name>`` otherwise. Defaults are applied at each fire, not
    stored, so a template's new default reaches the schedule."""
    template = _template(templates, template_id)
    try:
        plan_crew(template, inputs)
    except ValidationFailed as exc:
        raise ValidationFailed(str(exc), _inputs_fields(exc)) from None
    return dict(inputs)


def check_changes(
    values: Mapping[str, Any],
    templates: Mapping[str, Template],
    *,
    current: Schedule | None = None,
) -> ScheduleChanges:
    """Check a new schedule (``current`` None: name, templateId, inputs, rule
    and timezone are required) or an edit of ``current`` (only what is given).
    Every bad field is reported at once, in one ValidationFailed.

    ``values`` holds the fields as the caller sent them (camelCase, as in
    the API); a field that is absent or None is not given. ``templates`` are
    the loaded templates by id, which the inputs are checked against."""
    fields: dict[str, str] = {}
    creating = current is None
    if creating:
        for key in ("name", "templateId", "inputs", "rule", "timezone"):
            if values.get(key) is None:
                fields[key] = "is required"
    name = values.get("name")
    if name is not None:
        if not isinstance(name, str):
            fields["name"] = "must be a string"
            name = None
        elif not name.strip():
            fields["name"] = "must not be empty"
        elif len(name.strip()) > MAX_NAME_CHARS:
            fields["name"] = f"must be at most {MAX_NAME_CHARS} characters"
    rule = timezone = overlap = None
    if values.get("rule") is not None:
        try:
            rule = cron.validate_rule(values["rule"])
        except ValidationFailed as exc:
            fields.update(exc.fields)
    if values.get("timezone") is not None:
        try:
            timezone = cron.validate_timezone(values["timezone"]).key
        except ValidationFailed as exc:
            fields.update(exc.fields)
    if values.get("overlap") is not None:
        try:
            overlap = cron.validate_overlap(values["overlap"])
        except ValidationFailed as exc:
            fields.update(exc.fields)
    enabled = values.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        fields["enabled"] = "must be true or false"
    template_id = values.get("templateId")
    if template_id is not None and not isinstance(template_id, str):
        fields["templateId"] = "must be a string"
        template_id = None
    inputs = values.get("inputs")
    if inputs is not None and not isinstance(inputs, dict):
        fields["inputs"] = "must be an object"
        inputs = None
    checked_inputs = None
    target = template_id if template_id is not None else (current.template_id if current else None)
    if target is not None and (inputs is not None or template_id is not None):
        try:
            checked_inputs = check_inputs(
                templates,
                target,
                inputs if inputs is not None else (current.inputs if current else {}),
            )
        except ValidationFailed as exc:
            for key, message in exc.fields.items():
                fields.setdefault(key, message)
    if fields:
        raise ValidationFailed("some fields are not valid", fields)
    return ScheduleChanges(
        name=name.strip() if isinstance(name, str) else None,
        template_id=template_id,
        inputs=checked_inputs,
        rule=rule,
        timezone=timezone,
        overlap=overlap,
        enabled=enabled,
    )


# --- reading ------------------------------------------------------------------


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
    included), and the cursor of the next page (None on the last)."""
    limit = max(1, min(limit, job_views.MAX_PAGE))
    query = job_views.jobs_query().where(Job.schedule == schedule_id)
    if cursor:
        query = query.where(Job.id < job_views.decode_cursor(cursor))
    found = list(query.order_by(Job.id.desc()).limit(limit + 1))
    page = found[:limit]
    more = len(found) > limit
    return page, (job_views.encode_cursor(page[-1].id) if more and page else None)


def due_schedules(now: datetime, limit: int = 100) -> list[DueSchedule]:
    """Enabled schedules whose next fire time has come, earliest first. A
    disabled account's schedules do not fire."""
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


# --- user intent --------------------------------------------------------------


def _locked(schedule_id: int) -> Schedule | None:
    """The schedule, read inside the current write transaction. SQLite's
    BEGIN IMMEDIATE already holds the write lock; PostgreSQL locks the row."""
    query = Schedule.select().where(Schedule.id == schedule_id)
    if not is_sqlite():
        query = query.for_update()
    return query.first()


@write
def create_schedule(owner_id: int, changes: ScheduleChanges, now: datetime) -> Schedule:
    """Write a checked new schedule; its first fire is the rule's first after
    ``now`` (none while disabled)."""
    assert changes.name and changes.template_id and changes.rule and changes.timezone
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
        next_run_at=cron.next_fire(changes.rule, changes.timezone, now) if enabled else None,
        last_run_at=None,
        created_at=now,
        updated_at=now,
    )
    record_event(
        ScheduleEvent.CREATED,
        schedule=schedule,
        actor=user_actor(owner_id),
        message=f"schedule {changes.name!r} created",
        data={"nextRunAt": iso(schedule.next_run_at)},
    )
    return schedule


@write
def update_schedule(
    schedule_id: int, user_id: int, changes: ScheduleChanges, now: datetime
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
    ):
        if value is not None and getattr(schedule, attr) != value:
            changed[attr] = value
    if not changed:
        return schedule
    for attr, value in changed.items():
        setattr(schedule, attr, value)
    if schedule.enabled and ("rule" in changed or "timezone" in changed):
        schedule.next_run_at = cron.next_fire(schedule.rule, schedule.timezone, now)
    schedule.updated_at = now
    schedule.save()
    record_event(
        ScheduleEvent.UPDATED,
        schedule=schedule,
        actor=user_actor(user_id),
        message="changed " + ", ".join(sorted(changed)),
        data={"fields": sorted(changed), "nextRunAt": iso(schedule.next_run_at)},
    )
    return schedule


@write
def enable_schedule(schedule_id: int, user_id: int, now: datetime) -> Schedule:
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
        ScheduleEvent.ENABLED,
        schedule=schedule,
        actor=user_actor(user_id),
        message="schedule resumed",
        data={"nextRunAt": iso(schedule.next_run_at)},
    )
    return schedule


@write
def disable_schedule(schedule_id: int, user_id: int, now: datetime) -> Schedule:
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
        ScheduleEvent.DISABLED, schedule=schedule, actor=user_actor(user_id), message="paused"
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


def _plan(templates: Mapping[str, Template], schedule: Schedule) -> CrewPlan:
    template = _template(templates, schedule.template_id)
    try:
        return plan_crew(template, schedule.inputs)
    except ValidationFailed as exc:
        raise ValidationFailed(str(exc), _inputs_fields(exc)) from None


def _spawn(plan: CrewPlan, schedule: Schedule, actor: str, now: datetime) -> tuple[Crew, list[Job]]:
    # create_crew's body, inside this transaction: the crew commits with the fire.
    return board_jobs.create_crew.__wrapped__(  # type: ignore[attr-defined]
        plan,
        schedule.owner_id,
        schedule_id=schedule.id,
        title=schedule.name,
        actor=actor,
        now=now,
    )


@write
def run_schedule_now(
    schedule_id: int, user_id: int, templates: Mapping[str, Template], now: datetime
) -> tuple[Crew, list[Job]]:
    """Spawn a crew from the schedule at once, enabled or not, whatever its
    overlap; the next fire stays where it was. ValidationFailed if the
    template is gone or no longer accepts the inputs."""
    schedule = _locked(schedule_id)
    if schedule is None:
        raise NotFound("no such schedule")
    crew, jobs = _spawn(_plan(templates, schedule), schedule, user_actor(user_id), now)
    record_event(
        ScheduleEvent.RUN_NOW,
        schedule=schedule,
        actor=user_actor(user_id),
        message=f"crew {crew.id} spawned now",
        data={"crewId": crew.id, "jobIds": [job.id for job in jobs]},
    )
    return crew, jobs


# --- the scheduler's transitions ----------------------------------------------


@write
def record_schedule_fire(
    schedule_id: int,
    fire_at: datetime,
    now: datetime,
    *,
    templates: Mapping[str, Template],
    due_from: datetime,
    next_run_at: datetime,
    missed: int = 1,
) -> FireResult:
    """Deal with one fire time, all in one transaction.

    The caller read the schedule with ``next_run_at == due_from`` and worked
    out (:func:`crewboard.cron.due_fires`) that the fires from ``due_from`` up
    to ``now`` — ``missed`` of them, the latest ``fire_at`` — coalesce into
    one, and that the next is ``next_run_at``. If the schedule has since been
    edited, paused, deleted or fired by someone else, nothing is written
    (``STALE``). If ``fire_at`` was already dealt with, the unique key refuses
    the fire and nothing of it is written (``DUPLICATE``); the schedule still
    moves on to ``next_run_at``. Otherwise the fire is recorded and either
    spawns a crew linked to the schedule (``SPAWNED``, with a ``fired`` event
    and, when several fires coalesced, a ``coalesced`` event counting them),
    is skipped because ``overlap: skip`` and an earlier crew is still active
    (``SKIPPED``, with a ``skipped`` event), or fails because the template or
    inputs no longer make a crew (``FAILED``, with a ``fire_failed`` event).
    """
    schedule = _locked(schedule_id)
    if schedule is None or not schedule.enabled or schedule.next_run_at != due_from:
        return FireResult(FireOutcome.STALE)
    # Decide first (reads only), so the fire's row is written once, final.
    active = count_active_jobs(schedule_id)
    skip = cron.should_skip_for_overlap(schedule.overlap, active)
    plan: CrewPlan | None = None
    reason = ""
    if not skip:
        try:
            plan = _plan(templates, schedule)
        except ValidationFailed as exc:
            reason = "; ".join(f"{k}: {v}" for k, v in exc.fields.items()) or str(exc)
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
            ScheduleEvent.SKIPPED,
            schedule=schedule,
            actor=SCHEDULER,
            message=f"skipped the fire at {iso(fire_at)}: an earlier crew still has "
            f"{active} job(s) waiting, ready or running (overlap: skip)",
            data={**when, "activeJobs": active},
        )
        return FireResult(outcome)
    if plan is None:
        record_event(
            ScheduleEvent.FIRE_FAILED,
            schedule=schedule,
            actor=SCHEDULER,
            message=f"the fire at {iso(fire_at)} made no crew: {reason}",
            data={**when, "reason": reason},
        )
        return FireResult(outcome, detail=reason)
    crew, jobs = _spawn(plan, schedule, SCHEDULER, now)
    ScheduleFire.update(crew=crew).where(ScheduleFire.id == fire.id).execute()
    job_ids = tuple(job.id for job in jobs)
    if missed > 1:
        record_event(
            ScheduleEvent.COALESCED,
            schedule=schedule,
            actor=SCHEDULER,
            message=f"{missed} fire times passed while the scheduler was not running "
            f"({iso(due_from)} to {iso(fire_at)}); they made one crew",
            data={**when, "firstFireAt": iso(due_from), "crewId": crew.id},
        )
    record_event(
        ScheduleEvent.FIRED,
        schedule=schedule,
        actor=SCHEDULER,
        message=f"fired at {iso(fire_at)}: crew {crew.id}",
        data={**when, "crewId": crew.id, "jobIds": list(job_ids)},
    )
    return FireResult(outcome, crew.id, job_ids)


@write
def disable_unreadable(schedule_id: int, due_from: datetime, reason: str) -> bool:
    """Pause a schedule whose stored rule or zone can no longer be read (a
    zone dropped from the tz database, say), so it does not hold up the
    scheduler; the event says why. False if it changed meanwhile."""
    schedule = _locked(schedule_id)
    if schedule is None or not schedule.enabled or schedule.next_run_at != due_from:
        return False
    Schedule.update(enabled=False, next_run_at=None).where(Schedule.id == schedule_id).execute()
    record_event(
        ScheduleEvent.DISABLED,
        schedule=schedule,
        actor=SCHEDULER,
        message=f"paused: {reason}",
        data={"reason": reason},
    )
    return True
