"""Schedules: ``/api/schedules``. A schedule spawns a crew of a template with
fixed inputs at each fire time of a cron rule in an IANA time zone.

Listing and creating need a login; everything on one schedule is for its
owner or an admin (anyone else gets 404). Every write is checked whole before
anything is written, then the supervisor is woken so a new or changed next
fire time takes effect at once; ``run-now`` spawns its crew here, as user
intent, and wakes the supervisor to start it.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify, request

from crewboard import cron
from crewboard.board import db, job_views
from crewboard.board import schedules as board_schedules
from crewboard.board.models import Schedule
from crewboard.board.schedules import MAX_NAME_CHARS, ScheduleChanges
from crewboard.clock import utcnow
from crewboard.errors import ValidationFailed
from crewboard.wakeup import wake_supervisor
from crewboard.web import params
from crewboard.web.api.templates import current_templates
from crewboard.web.auth.guards import check_owner, login_required, require_principal
from crewboard.web.state import state
from crewboard.web.validate import Fields, json_object

bp = Blueprint("schedules", __name__, url_prefix="/api/schedules")

CREATE_FIELDS = frozenset(
    {"name", "templateId", "inputs", "rule", "timezone", "overlap", "enabled"}
)
EDIT_FIELDS = frozenset({"name", "inputs", "rule", "timezone", "overlap"})
DEFAULT_PREVIEW = 5


def _wake() -> None:
    wake_supervisor(state().home)


async def _checked(
    body: dict[str, Any], allowed: frozenset[str], current: Schedule | None = None
) -> ScheduleChanges:
    """The body's fields checked together: shape here, meaning on the board."""
    fields = Fields(body, allowed=set(allowed))
    values = {key: body[key] for key in allowed if key in body}
    if current is not None:
        for key, value in values.items():
            if value is None:
                fields.fail(key, "must not be null")
    if isinstance(values.get("name"), str):
        values["name"] = fields.string("name", max_length=MAX_NAME_CHARS)
    errors = dict(fields.errors)
    wanted = {k: v for k, v in values.items() if v is not None}
    needs_templates = current is None or "inputs" in wanted
    templates = await current_templates() if needs_templates else {}
    try:
        changes = board_schedules.check_changes(wanted, templates, current=current)
    except ValidationFailed as exc:
        for key, message in exc.fields.items():
            errors.setdefault(key, message)
    if errors:
        raise ValidationFailed("some fields are not valid", errors)
    return changes


async def _owned(schedule_id: int) -> Schedule:
    schedule = await db.call(board_schedules.get_schedule, schedule_id)
    check_owner(schedule.owner_id, "schedule")
    return schedule


@bp.get("")
@login_required
async def list_schedules():
    who = require_principal()
    rows = await db.call(board_schedules.list_schedules, who, params.flag("mine"))
    return jsonify([board_schedules.schedule_public(s) for s in rows])


@bp.post("")
@login_required
async def create_schedule():
    who = require_principal()
    changes = await _checked(await json_object(), CREATE_FIELDS)
    schedule = await db.call(board_schedules.create_schedule, who.user_id, changes, utcnow())
    if schedule.enabled:
        _wake()
    schedule = await db.call(board_schedules.get_schedule, schedule.id)
    return jsonify(board_schedules.schedule_public(schedule)), 201


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
    return jsonify(board_schedules.schedule_public(await _owned(schedule_id)))


@bp.patch("/<id:schedule_id>")
@login_required
async def update_schedule(schedule_id: int):
    who = require_principal()
    current = await _owned(schedule_id)
    changes = await _checked(await json_object(), EDIT_FIELDS, current)
    updated = await db.call(
        board_schedules.update_schedule, schedule_id, who.user_id, changes, utcnow()
    )
    if updated.next_run_at != current.next_run_at:
        _wake()
    return jsonify(board_schedules.schedule_public(await _owned(schedule_id)))


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
    jobs, next_cursor = await db.call(
        board_schedules.list_schedule_jobs, schedule_id, limit, cursor
    )
    return jsonify({"jobs": [job_views.job_public(j) for j in jobs], "nextCursor": next_cursor})


@bp.post("/<id:schedule_id>/enable")
@login_required
async def enable_schedule(schedule_id: int):
    who = require_principal()
    await _owned(schedule_id)
    await db.call(board_schedules.enable_schedule, schedule_id, who.user_id, utcnow())
    _wake()
    return jsonify(board_schedules.schedule_public(await _owned(schedule_id)))


@bp.post("/<id:schedule_id>/disable")
@login_required
async def disable_schedule(schedule_id: int):
    who = require_principal()
    await _owned(schedule_id)
    await db.call(board_schedules.disable_schedule, schedule_id, who.user_id, utcnow())
    return jsonify(board_schedules.schedule_public(await _owned(schedule_id)))


@bp.post("/<id:schedule_id>/run-now")
@login_required
async def run_schedule_now(schedule_id: int):
    who = require_principal()
    await _owned(schedule_id)
    templates = await current_templates()
    crew, jobs = await db.call(
        board_schedules.run_schedule_now, schedule_id, who.user_id, templates, utcnow()
    )
    _wake()
    return jsonify({"crewId": crew.id, "jobIds": [job.id for job in jobs]}), 201
