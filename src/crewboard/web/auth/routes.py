"""Local sign-in and the session routes of ``/auth/*``: login, logout, the
current profile and whether Google sign-in is offered.

A sign-in must come from this server's own pages or from a JSON client
(:func:`~crewboard.web.auth.guards.check_sign_in_origin`), and counts against
the board's sign-in limits (:mod:`crewboard.board.login_throttle`) before its
password is hashed."""

from __future__ import annotations

import trio
from quart import Blueprint, Response, jsonify, redirect, request

from crewboard.board import db, login_throttle
from crewboard.board import users as board_users
from crewboard.clock import utcnow
from crewboard.errors import BadRequest, Unauthorized
from crewboard.web.auth.guards import (
    SESSION_COOKIE,
    check_sign_in_origin,
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
    check_sign_in_origin()
    body = await json_object(allow_form=True)
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        raise BadRequest("send email and password as strings")
    if len(email) > 320 or len(password) > 1024:
        raise Unauthorized(BAD_CREDENTIALS)
    email = board_users.normalize_email(email)
    st = state()
    limits = (st.config.login_attempts, st.config.login_window_s)
    keys = login_throttle.LoginKeys.of(email, request.remote_addr or "-")
    # Counted before the hash (429 here if over a limit), so parallel guesses
    # cannot all be checked; an account under attack waits its slowdown.
    now = utcnow().timestamp()
    slowdown_s = await db.call(login_throttle.take_login_attempt, keys, *limits, now=now)
    if slowdown_s > 0:
        await trio.sleep(slowdown_s)
    user = await db.call(board_users.get_user_by_email, email)
    password_hash = user.password_hash if user is not None and not user.disabled else None
    ok = await trio.to_thread.run_sync(st.passwords.verify, password_hash, password)
    if not ok or user is None:
        raise Unauthorized(BAD_CREDENTIALS)
    await db.call(login_throttle.login_succeeded, keys, *limits)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        await db.call(board_users.revoke_session, old)
    token = await db.call(board_users.create_session, user.id, "local", now=utcnow())
    who = board_users.Principal(user.id, user.email, user.name, user.is_admin, "local")
    response = jsonify(who.profile())
    set_session_cookie(response, token)
    return response


async def _end_session() -> None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await db.call(board_users.revoke_session, cookie)


@bp.get("/logout")
async def logout():
    """The seed's sign-out link: ends the session and goes home."""
    await _end_session()
    response = redirect("/")
    clear_session_cookie(response)
    return response


@bp.post("/logout")
async def logout_post():
    """Sign out as an unsafe request, so that only this server's pages can
    do it (the cookie's same-origin check applies); what the browser uses."""
    await _end_session()
    response = Response("", status=204)
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
