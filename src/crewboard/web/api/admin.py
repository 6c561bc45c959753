"""Administration: ``/api/admin/*``, for administrators only.

``GET /api/admin/usage`` shows each user's usage against the per-user limits
of :mod:`crewboard.limits`; ``POST /api/admin/users/<id>/disable`` and
``/enable`` turn an account off (its queue blocked, its schedules paused, in
one transaction: :func:`crewboard.board.users.disable_user`) and on again.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify

from crewboard import limits
from crewboard.board import db, usage
from crewboard.board import users as board_users
from crewboard.board.events import user_actor
from crewboard.clock import utcnow
from crewboard.errors import Conflict, NotFound
from crewboard.web.auth.guards import admin_required, require_principal
from crewboard.web.state import state, wake_supervisor_after

bp = Blueprint("admin", __name__, url_prefix="/api/admin")


def _usage_rows(turns: dict[int, int]) -> list[dict[str, Any]]:
    """Every user with their usage; ``turns`` is their running chat turns."""
    counts = usage.usage_by_user()
    return [
        {
            "id": user.id,
            "email": user.email,
            "name": user.name,
            "isAdmin": user.is_admin,
            "disabled": user.disabled,
            "usage": {limits.CHAT_TURNS.key: turns.get(user.id, 0), **counts.get(user.id, {})},
        }
        for user in board_users.list_users()
    ]


async def _usage() -> list[dict[str, Any]]:
    return await db.call(_usage_rows, state().services.chat_turns.running_by_owner())


async def _user_row(user_id: int) -> dict[str, Any]:
    row = next((r for r in await _usage() if r["id"] == user_id), None)
    if row is None:
        raise NotFound("no such user")
    return row


@bp.get("/usage")
@admin_required
async def get_usage():
    rows = await _usage()
    return jsonify({"limits": limits.configured(state().config), "users": rows})


@bp.post("/users/<id:user_id>/disable")
@admin_required
async def disable_user(user_id: int):
    who = require_principal()
    if user_id == who.user_id:
        raise Conflict("you cannot disable your own account")
    done = await db.call(
        board_users.disable_user, user_id, actor=user_actor(who.user_id), now=utcnow()
    )
    # The schedules' next fires moved: the scheduler looks again at once.
    wake_supervisor_after(board_users.disable_user)
    return jsonify(
        {
            "user": await _user_row(user_id),
            "blockedJobIds": done.blocked_job_ids,
            "pausedScheduleIds": done.paused_schedule_ids,
        }
    )


@bp.post("/users/<id:user_id>/enable")
@admin_required
async def enable_user(user_id: int):
    await db.call(board_users.enable_user, user_id)
    return jsonify({"user": await _user_row(user_id)})
