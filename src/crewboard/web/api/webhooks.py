"""``/api/webhooks``: the signed-in user's webhook signing secret, and the
check every route runs on a webhook URL a user names.

Each user's deliveries are signed with their own secret; this route shows it
to its owner alone (there is no way to name another user's), and rotating it
replaces it at once, for retries of earlier deliveries too.
"""

from __future__ import annotations

import trio
from quart import Blueprint, jsonify

from crewboard.board import db
from crewboard.board import webhooks as board_webhooks
from crewboard.clock import utcnow
from crewboard.errors import ValidationFailed
from crewboard.netguard import AllowList, system_resolver
from crewboard.web.auth.guards import login_required, require_principal
from crewboard.web.state import state
from crewboard.webhooks import BadWebhookUrl, check_url

bp = Blueprint("webhooks", __name__, url_prefix="/api/webhooks")


async def vet_webhook_url(url: object, field: str = "webhookUrl") -> str:
    """``url`` checked in full (form, and every address its host resolves to
    now), or ValidationFailed naming ``field``."""
    allow = AllowList.parse(state().config.webhook_allow)
    try:
        # Resolving the host blocks: keep it off the event loop.
        return await trio.to_thread.run_sync(check_url, url, allow, system_resolver)
    except BadWebhookUrl as exc:
        raise ValidationFailed(f"{field} {exc}", {field: str(exc)}) from None


@bp.get("/secret")
@login_required
async def get_secret():
    who = require_principal()
    row = await db.call(board_webhooks.signing_secret, who.user_id, now=utcnow())
    return jsonify(board_webhooks.secret_public(row))


@bp.post("/secret/rotate")
@login_required
async def rotate_secret():
    who = require_principal()
    row = await db.call(board_webhooks.rotate_secret, who.user_id, now=utcnow())
    return jsonify(board_webhooks.secret_public(row))
