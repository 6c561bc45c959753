"""Schedules: ``/api/schedules``. A schedule spawns a crew of a template with
fixed inputs at each fire time of a cron rule in an IANA time zone.

Listing and creating need a login; everything on one schedule is for its
owner or an admin (anyone else gets 404). Every write is checked whole
(:mod:`crewboard.web.schedule_checks`) before anything is written, then the
supervisor is woken so a new or changed next fire time takes effect at once;
``run-now`` renders and spawns its crew here, as user intent, and wakes the
supervisor to start it.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify, request

from crewboard import cron, textcheck
from crewboard.board import db, job_views, schedule_views
from crewboard.board import schedules as board_schedules
from crewboard.board.models import Schedule
from crewboard.board.schedule_views import schedule_public
from crewboard.board.schedules import ScheduleChanges
from crewboard.clock import utcnow
from crewboard.errors import ValidationFailed
from crewboard.web import params, schedule_checks
from crewboard.web.api.templates import current_templates
from crewboard.web.api.webhooks import vet_webhook_url
from crewboard.web.auth.guards import check_owner, login_required, require_principal
from crewboard.web.state import state, wake_supervisor_after
from crewboard.web.validate import json_object
from crewboard.workflows import plan_named_crew

bp = Blueprint("schedules", __name__, url_prefix="/api/schedules")

DEFAULT_PREVIEW = 5


async def _checked(body: dict[str, Any], current: Schedule | None = None) -> ScheduleChanges:
    """The body checked whole; the templates are read only if the check needs them."""
    needed = schedule_checks.needs_templates(body, current)
    templates = await current_templates() if needed else {}
    changes = schedule_checks.check_schedule(body, templates, current=current)
    if changes.webhook_url:
        await vet_webhook_url(changes.webhook_url)
    return changes


async def _owned(schedule_id: int) -> Schedule:
    schedule = await db.call(schedule_views.get_schedule, schedule_id)
    check_owner(schedule.owner_id, "schedule")
    return schedule


@bp.get("")
@login_required
async def list_schedules():
    who = require_principal()
    rows = await db.call(schedule_views.list_schedules, who, params.flag("mine"))
    return jsonify([schedule_public(s) for s in rows])


@bp.post("")
@login_required
async def create_schedule():
    who = require_principal()
    changes = await _checked(await json_object())
    schedule = await db.call(
        board_schedules.create_schedule,
        who.user_id,
        changes,
        max_schedules=state().config.schedules_per_user,
        now=utcnow(),
    )
    if schedule.enabled:
        wake_supervisor_after(board_schedules.create_schedule)
    schedule = await db.call(schedule_views.get_schedule, schedule.id)
    return jsonify(schedule_public(schedule)), 201


@bp.get("/preview")
@login_required
async def preview_schedule():
    fields: dict[str, str] = {}
    rule = request.args.get("rule")
    if rule is None:
        fields["rule"] = "is required"
    raw = request.args.get("count", str(DEFAULT_PREVIEW)).strip()
    digits = raw.lstrip("0") or "0"
    count = 1
    if not (raw.isascii() and raw.isdigit()) or digits == "0":
        fields["count"] = "must be a whole number, 1 or more"
    else:
        # Clamped, however large.
        count = cron.PREVIEW_MAX if len(digits) > 3 else min(int(digits), cron.PREVIEW_MAX)
    try:
        times = cron.preview(rule, request.args.get("timezone", "UTC"), count, utcnow())
    except ValidationFailed as exc:
        fields = {**exc.fields, **fields}
    if fields:
        raise ValidationFailed("invalid schedule preview", fields)
    return jsonify({"times": times})


@bp.get("/<id:schedule_id>")
@login_required
async def get_schedule(schedule_id: int):
    return jsonify(schedule_public(await _owned(schedule_id)))


@bp.patch("/<id:schedule_id>")
@login_required
async def update_schedule(schedule_id: int):
    who = require_principal()
    current = await _owned(schedule_id)
    changes = await _checked(await json_object(), current)
    updated = await db.call(
        board_schedules.update_schedule, schedule_id, who.user_id, changes, now=utcnow()
    )
    if updated.next_run_at != current.next_run_at:
        wake_supervisor_after(board_schedules.update_schedule)
    return jsonify(schedule_public(await _owned(schedule_id)))


@bp.delete("/<id:schedule_id>")
@login_required
async def delete_schedule(schedule_id: int):
    await _owned(schedule_id)
    await db.call(board_schedules.delete_schedule, schedule_id)
    return "", 204


@bp.get("/<id:schedule_id>/jobs")
@login_required
async def list_schedule_jobs(schedule_id: int):
    await _owned(schedule_id)
    limit = params.integer("limit", job_views.DEFAULT_PAGE, minimum=1, maximum=job_views.MAX_PAGE)
    cursor = params.text("cursor", max_length=200)
    jobs, next_cursor = await db.call(schedule_views.list_schedule_jobs, schedule_id, limit, cursor)
    return jsonify({"jobs": [job_views.job_summary(j) for j in jobs], "nextCursor": next_cursor})


@bp.post("/<id:schedule_id>/enable")
@login_required
async def enable_schedule(schedule_id: int):
    who = require_principal()
    await _owned(schedule_id)
    await db.call(board_schedules.enable_schedule, schedule_id, who.user_id, now=utcnow())
    wake_supervisor_after(board_schedules.enable_schedule)
    return jsonify(schedule_public(await _owned(schedule_id)))


@bp.post("/<id:schedule_id>/disable")
@login_required
async def disable_schedule(schedule_id: int):
    who = require_principal()
    await _owned(schedule_id)
    await db.call(board_schedules.disable_schedule, schedule_id, who.user_id, now=utcnow())
    return jsonify(schedule_public(await _owned(schedule_id)))


@bp.post("/<id:schedule_id>/run-now")
@login_required
async def run_schedule_now(schedule_id: int):
    who = require_principal()
    schedule = await _owned(schedule_id)
    # Inputs stored before the body checks existed may hold what no crew can.
    unstorable = textcheck.stored_value_problems(schedule.inputs, "inputs")
    if unstorable:
        raise ValidationFailed("the schedule's stored inputs cannot make a crew", unstorable)
    # Rendered here, before the board's transaction, from the schedule as read:
    # a 422 if its template is gone or no longer takes its inputs.
    plan = plan_named_crew(await current_templates(), schedule.template_id, schedule.inputs)
    crew, jobs = await db.call(
        board_schedules.run_schedule_now,
        schedule_id,
        who.user_id,
        plan=plan,
        max_queued=state().config.queued_jobs_per_user,
        now=utcnow(),
    )
    wake_supervisor_after(board_schedules.run_schedule_now)
    return jsonify({"crewId": crew.id, "jobIds": [job.id for job in jobs]}), 201
