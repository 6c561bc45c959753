"""``GET /api/agents``: the agent presets a user can chat with or name in a
workflow (with the MCP tools each has, as far as the web has listed them:
:mod:`crewboard.web.mcp`), and :func:`current_presets`, the one way the web
process reads them.

Presets are read from their folders on each use, so a preset the operator
adds or fixes shows up without a restart. A broken preset file is left out
and logged (once per distinct problem), never an error for the caller.
"""

from __future__ import annotations

import logging

import trio
from quart import Blueprint, jsonify

from crewboard.agents import Preset, load_presets
from crewboard.web.auth.guards import login_required
from crewboard.web.state import state

log = logging.getLogger(__name__)

bp = Blueprint("agents", __name__, url_prefix="/api/agents")


async def current_presets() -> dict[str, Preset]:
    """Every loadable preset by id: the shipped ones, then ``CREWBOARD_AGENTS``."""
    st = state()
    presets, errors = await trio.to_thread.run_sync(load_presets, st.config.agents)
    reported = st.reported_preset_errors
    for error in errors:
        text = str(error)
        if text not in reported:
            reported.add(text)
            log.warning("agent preset left out: %s", text)
    return presets


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
