"""``GET /api/mcp`` (administrators): each configured MCP server, its table
(without secret values), whether it starts, its last error and its tools."""

from __future__ import annotations

from quart import Blueprint, jsonify

from crewboard.web.auth.guards import admin_required
from crewboard.web.state import state

bp = Blueprint("mcp", __name__, url_prefix="/api/mcp")


@bp.get("")
@admin_required
async def list_servers():
    catalog = state().services.mcp
    catalog.refresh_stale()
    return jsonify([entry.public() for entry in catalog.servers.values()])
