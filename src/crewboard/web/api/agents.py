"""``GET /api/agents``: the agent presets a user can chat with or name in a
workflow (with the MCP tools each has, as far as the web has listed them:
:mod:`crewboard.web.mcp`), and :func:`current_presets`, the one way the web
process reads them.

Presets come from the web's :class:`~crewboard.catalog.Catalog`, which looks
at their files on each use and re-reads them when one changed, so a preset
the operator adds or fixes shows up without a restart. A broken preset file
is left out and logged (once per distinct problem), never an error for the
caller.
"""

from __future__ import annotations

import logging

from quart import Blueprint, jsonify

from crewboard.agents import Preset
from crewboard.web.auth.guards import login_required
from crewboard.web.state import state

log = logging.getLogger(__name__)

bp = Blueprint("agents", __name__, url_prefix="/api/agents")


async def current_presets() -> dict[str, Preset]:
    """Every loadable preset by id: the shipped ones, then ``CREWBOARD_AGENTS``."""
    return await state().catalog.presets()


@bp.get("")
@login_required
async def list_agents():
    presets = await current_presets()
    catalog = state().services.mcp
    catalog.refresh_stale()
    return jsonify(
        [
            {**preset.public(), "mcpTools": catalog.preset_tools(preset.mcp, preset.mcp_tools)}
            for preset in presets.values()
        ]
    )
