"""``GET /api/dispatcher/status``: whether a supervisor is alive, read from
the board's heartbeat rows (their age and nothing else), with how much work is
running and ready."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify

from crewboard.board import db, heartbeats, job_views
from crewboard.clock import utcnow
from crewboard.web.auth.guards import login_required

bp = Blueprint("dispatcher", __name__, url_prefix="/api/dispatcher")


def _status() -> dict[str, Any]:
    now = utcnow()
    # Liveness by the board's clock, whatever this host's says.
    return heartbeats.status(ready_jobs=job_views.count_ready(now=now))


@bp.get("/status")
@login_required
async def dispatcher_status():
    return jsonify(await db.call(_status))
