"""Personal API tokens: ``/api/tokens``. A token is shown once, at creation
(an answer no cache may keep); the board keeps only its hash. A token may be
made to expire after ``expiresInDays``."""

from __future__ import annotations

from quart import Blueprint, jsonify

from crewboard.board import db
from crewboard.board import users as board_users
from crewboard.clock import utcnow
from crewboard.errors import NotFound
from crewboard.web.auth.guards import login_required, require_principal
from crewboard.web.validate import Fields, json_object

bp = Blueprint("tokens", __name__, url_prefix="/api/tokens")

MAX_TOKENS_PER_USER = 100


@bp.get("")
@login_required
async def list_tokens():
    who = require_principal()
    rows = await db.call(board_users.list_tokens, who.user_id)
    return jsonify([board_users.token_public(t) for t in rows])


@bp.post("")
@login_required
async def create_token():
    who = require_principal()
    body = await json_object()
    fields = Fields(body, allowed={"name", "expiresInDays"})
    name = fields.string("name", max_length=100)
    expires_in_days = fields.integer("expiresInDays", minimum=1, maximum=board_users.MAX_TOKEN_DAYS)
    if len(await db.call(board_users.list_tokens, who.user_id)) >= MAX_TOKENS_PER_USER:
        fields.fail("name", f"you already have {MAX_TOKENS_PER_USER} tokens; revoke some first")
    fields.done()
    row, secret = await db.call(
        board_users.create_token, who.user_id, name, expires_in_days=expires_in_days, now=utcnow()
    )
    public = board_users.token_public(row)
    del public["lastUsedAt"]  # never used yet: the answer names the token and shows its secret
    response = jsonify({**public, "token": secret})
    response.headers["Cache-Control"] = "no-store"
    return response, 201


@bp.delete("/<id:token_id>")
@login_required
async def revoke_token(token_id: int):
    who = require_principal()
    if not await db.call(board_users.revoke_token, who.user_id, token_id):
        raise NotFound("no such token")
    return "", 204
