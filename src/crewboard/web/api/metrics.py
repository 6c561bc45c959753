"""``GET /metrics``: the Prometheus scrape, for administrators.

A 404, as for any unknown route, unless ``CREWBOARD_METRICS`` is on; then an
administrator's API token as a bearer token (what Prometheus sends from its
``authorization`` setting) or session. The counts of every process and the
board's gauges come from :mod:`crewboard.metrics`.
"""

from __future__ import annotations

import trio
from quart import Blueprint, Response

from crewboard import metrics
from crewboard.board import db
from crewboard.board.gauges import board_gauges
from crewboard.clock import utcnow
from crewboard.errors import Forbidden, NotFound
from crewboard.web.auth.guards import require_principal
from crewboard.web.state import state

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
async def scrape():
    if not state().config.metrics or not metrics.enabled():
        raise NotFound("no such route")
    if not require_principal().is_admin:
        raise Forbidden("this needs an administrator")
    gauges = await db.call(board_gauges, now=utcnow())
    body, content_type = await trio.to_thread.run_sync(metrics.exposition, gauges)
    return Response(body, content_type=content_type)
