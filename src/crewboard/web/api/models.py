"""``GET /api/models``: the models a user can pick for a chat session. A
provider that is down, slow or answers nonsense is left out (and logged); the
offline model is always listed, so the answer is never an error."""

from __future__ import annotations

import logging

from quart import Blueprint, jsonify

from crewboard import providers
from crewboard.web.auth.guards import login_required
from crewboard.web.state import state

log = logging.getLogger(__name__)

bp = Blueprint("models", __name__, url_prefix="/api/models")


@bp.get("")
@login_required
async def list_models():
    try:
        models = await providers.list_models(state().config)
    except Exception:
        # list_models already leaves out providers that fail; this is the
        # backstop for a bug, so a picker still gets the offline model.
        log.exception("listing models failed; answering with the offline model only")
        models = [dict(m) for m in providers.OFFLINE_MODELS]
    return jsonify(models)
