"""``GET /api/templates``: the workflow templates users can start crews from,
valid or not (an invalid one says why).

Templates come from the web's :class:`~crewboard.catalog.Catalog`: loaded
with the ids of the agent presets they may name, and kept until a template or
preset file changes.
"""

from __future__ import annotations

import logging

from quart import Blueprint, jsonify

from crewboard.web.auth.guards import login_required
from crewboard.web.state import state
from crewboard.workflows import Template

log = logging.getLogger(__name__)

bp = Blueprint("templates", __name__, url_prefix="/api/templates")


async def current_templates() -> dict[str, Template]:
    """Every template by id, reloaded if a template or preset file changed."""
    return await state().catalog.templates()


@bp.get("")
@login_required
async def list_templates():
    templates = await current_templates()
    return jsonify([template.public() for template in templates.values()])
