"""Who is calling, and the guards every route uses.

A request is authenticated by a bearer API token or by the session cookie.
Guards: :func:`login_required` (401 JSON for API calls, a redirect to
``/login`` for pages), :func:`admin_required` (403 for non-admins) and
:func:`check_owner` (404 for someone else's thing, admins pass).
Cookie-authenticated unsafe requests must come from the server's own origin.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from quart import g, redirect, request
from werkzeug.sansio.response import Response as SansIOResponse

from crewboard.board import db
from crewboard.board import users as board_users
from crewboard.board.users import Principal
from crewboard.clock import utcnow
from crewboard.errors import Forbidden, NotFound, Unauthorized
from crewboard.web.state import state

SESSION_COOKIE = "crewboard_session"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def principal() -> Principal | None:
    return getattr(g, "principal", None)


def require_principal() -> Principal:
    who = principal()
    if who is None:
        raise Unauthorized("sign in first: send the session cookie or an API token")
    return who


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _expected_origin() -> str:
    configured = state().config.origin
    if configured:
        return configured
    return f"{request.scheme}://{request.host}".lower()


def _request_origin() -> str | None:
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        return origin.rstrip("/").lower()
    referer = request.headers.get("Referer")
    if referer:
        parts = urlsplit(referer)
        if parts.scheme and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}".lower()
    return None


def check_sign_in_origin() -> None:
    """Refuse a sign-in a page of another site made (login CSRF: a form
    that signs the victim's browser into the attacker's account).

    A browser names the page's origin in ``Origin`` on every POST (``null``
    when the page hides it): it must be this server's. Without ``Origin``,
    a ``Referer`` must be this server's. A request with neither is no
    browser's form, or one so old it cannot send JSON across sites; it is
    accepted only as ``application/json``, which a cross-site form cannot
    send and a cross-site script cannot send without CORS, which this server
    never grants. So command-line and API clients sign in as before."""
    sent = request.headers.get("Origin") is not None or request.headers.get("Referer")
    if sent:
        if _request_origin() != _expected_origin():
            raise Forbidden(
                "sign-in refused: it came from a page of another site "
                "(Origin or Referer is not this server's)"
            )
    elif (request.mimetype or "").lower() != "application/json":
        raise Forbidden(
            "sign-in refused: a form must come from this server's sign-in page "
            "(send Origin), or send the credentials as application/json"
        )


async def authenticate() -> None:
    """Before each request: find the caller, and refuse cross-origin unsafe
    requests that ride on the session cookie."""
    g.principal = None
    g.auth_via = None
    token = _bearer_token()
    if token is not None:
        who = await db.call(board_users.token_principal, token, now=utcnow())
        if who is None:
            raise Unauthorized("the API token is unknown, revoked or expired")
        g.principal, g.auth_via = who, "token"
        return
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        return
    if request.method in UNSAFE_METHODS and _request_origin() != _expected_origin():
        raise Forbidden(
            "cross-origin request refused: unsafe requests with the session cookie must "
            "send an Origin (or Referer) of this server"
        )
    who = await db.call(board_users.session_principal, cookie, now=utcnow())
    if who is not None:
        g.principal, g.auth_via = who, "cookie"


def _is_api_request() -> bool:
    return request.path.startswith(("/api/", "/auth/", "/openapi/"))


def login_required(fn: F) -> F:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if principal() is None:
            if _is_api_request():
                raise Unauthorized("sign in first: send the session cookie or an API token")
            target = request.full_path.rstrip("?")
            return redirect(f"/login?next={quote(target, safe='/')}")
        return await fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def admin_required(fn: F) -> F:
    @functools.wraps(fn)
    @login_required
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not require_principal().is_admin:
            raise Forbidden("this needs an administrator")
        return await fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def check_owner(owner_id: int, what: str = "thing") -> Principal:
    """Pass the owner and admins; anyone else is told it does not exist."""
    who = require_principal()
    if who.user_id != owner_id and not who.is_admin:
        raise NotFound(f"no such {what}")
    return who


def set_session_cookie(response: SansIOResponse, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(board_users.SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=state().config.secure_cookies,
        path="/",
    )


def clear_session_cookie(response: SansIOResponse) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        httponly=True,
        samesite="Lax",
        secure=state().config.secure_cookies,
        path="/",
    )
