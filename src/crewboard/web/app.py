"""``create_app``: wires the web process together — state, the services that
run while it serves, auth, error handling, request logs and one blueprint per
resource. Routes live in their blueprints, not here."""

from __future__ import annotations

import json
import logging
import secrets
import time
from functools import partial

import trio
from quart import Quart, g, request
from quart_trio import QuartTrio
from werkzeug.routing import BaseConverter

from crewboard import logs
from crewboard.board.sweep import serve_sweeps
from crewboard.catalog import Catalog
from crewboard.config import Config, read_secret_key_file
from crewboard.fswatch import FileWatch
from crewboard.home import Home
from crewboard.passwords import Passwords
from crewboard.web.auth.google import ProviderCache
from crewboard.web.auth.guards import authenticate
from crewboard.web.board_changes import BoardChanges
from crewboard.web.board_feed import serve_board_feed
from crewboard.web.chat import serve_chat_turns
from crewboard.web.edge import check_request_head
from crewboard.web.errors import register_error_handlers
from crewboard.web.job_stream import BoardWatch
from crewboard.web.loghub import serve_log_hub
from crewboard.web.mcp import serve_mcp_catalog
from crewboard.web.state import WebServices, WebState

access_log = logging.getLogger("crewboard.access")


class IdConverter(BaseConverter):
    """A board id: digits that fit in a 64-bit integer, so no id in a URL can
    overflow a query."""

    regex = r"[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: object) -> str:
        return str(value)


def _request_id(given: str) -> str:
    """The request's id: the client's ``X-Request-Id`` if it sent a usable
    one (a proxy's), else a fresh one. It goes into log lines and into the
    runs the request starts, so only plain characters are taken."""
    kept = given.strip()[:64]
    if kept and all(c.isascii() and (c.isalnum() or c in "-_.:") for c in kept):
        return kept
    return secrets.token_hex(8)


def _body_still_arriving() -> bool:
    if not (request.content_length or "chunked" in request.headers.get("Transfer-Encoding", "")):
        return False
    complete = getattr(request.body, "_complete", None)
    return complete is None or not complete.is_set()


async def serve_services(web: WebState, *, task_status: trio.TaskStatus[WebServices]) -> None:
    """Start every service of the web process, each once the previous one is
    ready; report them, then run until cancelled."""
    config, home = web.config, web.home
    async with trio.open_nursery() as nursery:
        await nursery.start(web.file_watch.serve)
        log_hub = await nursery.start(partial(serve_log_hub, watch=web.file_watch))
        await nursery.start(web.board_changes.listen)
        board_feed = await nursery.start(partial(serve_board_feed, changes=web.board_changes))
        chat_turns = await nursery.start(serve_chat_turns, config, home)
        mcp = await nursery.start(serve_mcp_catalog, config, home)
        # Chat files of sessions deleted through other hosts' nodes.
        await nursery.start(serve_sweeps, home, config.retention_every_s)
        task_status.started(WebServices(log_hub, board_feed, chat_turns, mcp, nursery.cancel_scope))


def create_app(config: Config, home: Home | None = None) -> Quart:
    home = home or Home(config.home)
    app = QuartTrio("crewboard.web", static_folder=None)
    app.url_map.converters["id"] = IdConverter
    app.url_map.strict_slashes = False
    app.config.update(
        MAX_CONTENT_LENGTH=config.max_body_bytes,
        SESSION_COOKIE_NAME="crewboard_flow",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.secure_cookies,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.secret_key = (
        read_secret_key_file(config.secret_key_file)
        if config.secret_key_file
        else home.secret_key()
    )
    file_watch = FileWatch()
    board_changes = BoardChanges(file_watch, None if config.database_url else home.board_db)
    web = app.extensions["crewboard"] = WebState(
        config=config,
        home=home,
        passwords=Passwords(config.argon2_time_cost, config.argon2_memory_kib),
        file_watch=file_watch,
        board_changes=board_changes,
        board_watch=BoardWatch(board_changes),
        catalog=Catalog(config),
        google_oidc=ProviderCache(),
    )
    register_error_handlers(app)

    @app.before_serving
    async def _start_services() -> None:
        # quart-trio's nursery lives exactly as long as the app serves.
        web.running = await app.nursery.start(serve_services, web)

    @app.after_serving
    async def _stop_services() -> None:
        if web.running is not None:
            await web.running.stop()
            web.running = None

    @app.before_request
    async def _start() -> None:
        g.request_id = _request_id(request.headers.get("X-Request-Id", ""))
        logs.set_request_id(g.request_id)
        g.started = time.perf_counter()
        g.principal = None
        check_request_head()
        await authenticate()

    @app.after_request
    async def _finish(response):
        response.headers["X-Request-Id"] = getattr(g, "request_id", "-")
        if _body_still_arriving():
            # Answered before the client finished sending its body (an early
            # error, an OPTIONS): Hypercorn would stall the next request on
            # this keep-alive connection, so ask the client for a fresh one.
            response.headers["Connection"] = "close"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        who = getattr(g, "principal", None)
        started = getattr(g, "started", None)
        # Health probes lower their own level (web/api/health.py).
        fields = {
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "durationMs": round((time.perf_counter() - started) * 1000, 1) if started else None,
            "userId": who.user_id if who else None,
            "requestId": getattr(g, "request_id", None),
            # Why a request failed on the server's side (507, 500), if it did.
            **({"error": g.error_reason} if "error_reason" in g else {}),
        }
        access_log.log(
            getattr(g, "access_log_level", logging.INFO),
            json.dumps(fields, separators=(",", ":")),
            extra={"fields": fields},
        )
        return response

    from crewboard.web import openapi, pages
    from crewboard.web.api import (
        admin,
        agents,
        board,
        dispatcher,
        health,
        jobs,
        mcp,
        metrics,
        models,
        schedules,
        sessions,
        templates,
        tokens,
        webhooks,
    )
    from crewboard.web.auth import google
    from crewboard.web.auth import routes as auth_routes

    for blueprint in (
        auth_routes.bp,
        google.bp,
        tokens.bp,
        openapi.bp,
        pages.bp,
        jobs.bp,
        templates.bp,
        dispatcher.bp,
        board.bp,
        sessions.bp,
        models.bp,
        agents.bp,
        mcp.bp,
        schedules.bp,
        health.bp,
        admin.bp,
        webhooks.bp,
        metrics.bp,
    ):
        app.register_blueprint(blueprint)
    return app
