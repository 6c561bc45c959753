"""Local sign-in and the session routes of ``/auth/*``: login, logout, the
current profile and whether Google sign-in is offered."""

from __future__ import annotations

import trio
from quart import Blueprint, jsonify, redirect, request

from crewboard.board import db
from crewboard.board import users as board_users
from crewboard.clock import utcnow
from crewboard.errors import BadRequest, TooManyRequests, Unauthorized
from crewboard.web.auth.guards import (
    SESSION_COOKIE,
    clear_session_cookie,
    principal,
    set_session_cookie,
)
from crewboard.web.state import state
from crewboard.web.validate import json_object

bp = Blueprint("auth", __name__, url_prefix="/auth")

BAD_CREDENTIALS = "wrong email or password"


@bp.post("/login")
async def login():
    body = await json_object(allow_form=True)
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        raise BadRequest("send email and password as strings")
    if len(email) > 320 or len(password) > 1024:
        raise Unauthorized(BAD_CREDENTIALS)
    email = board_users.normalize_email(email)
    st = state()
    keys = [f"ip:{request.remote_addr}", f"email:{email}"]
    wait_s = st.login_limiter.retry_after_s(keys)
    if wait_s:
        raise TooManyRequests(f"too many failed sign-ins; try again in {wait_s} s", wait_s)
    user = await db.call(board_users.get_user_by_email, email)
    password_hash = user.password_hash if user is not None and not user.disabled else None
    ok = await trio.to_thread.run_sync(st.passwords.verify, password_hash, password)
    if not ok or user is None:
        st.login_limiter.failed(keys)
        raise Unauthorized(BAD_CREDENTIALS)
    st.login_limiter.succeeded(keys)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        await db.call(board_users.revoke_session, old)
    token = await db.call(board_users.create_session, user.id, "local", now=utcnow())
    who = board_users.Principal(user.id, user.email, user.name, user.is_admin, "local")
    response = jsonify(who.profile())
    set_session_cookie(response, token)
    return response


@bp.get("/logout")
async def logout():
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await db.call(board_users.revoke_session, cookie)
    response = redirect("/")
    clear_session_cookie(response)
    return response


@bp.get("/me")
async def me():
    who = principal()
    response = jsonify(who.profile() if who else None)
    # Who is signed in is private to this client: no shared cache may keep it.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/google-enabled")
async def google_enabled():
    return jsonify({"enabled": state().config.google_enabled})
