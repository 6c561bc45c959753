"""The one JSON shape every error response takes:
``{"error": {"code", "message", "details"}}``.

Routes raise the errors of :mod:`crewboard.errors`; a
:class:`~crewboard.errors.RequestError` carries its own ``status`` and
``code``. Werkzeug's routing errors (404, 405, 413) are answered in the same
shape. A write the disk had no room for (ENOSPC, SQLite's "database or disk is
full", PostgreSQL's ``disk_full``) is translated here into
:class:`~crewboard.errors.InsufficientStorage`, a 507: the transaction rolled
back, so nothing was written. A board that did not answer in time (a
statement past PostgreSQL's ``statement_timeout``, no free pooled connection,
a lost connection) becomes :class:`~crewboard.errors.ServiceUnavailable`, a
503 with ``Retry-After``. Anything else is a 500 with a request id, its
traceback in the log. Both say why in ``g.error_reason``, which the access log
line of the request carries.
"""

from __future__ import annotations

import logging
from typing import Any

from quart import Quart, current_app, g, jsonify
from werkzeug.exceptions import HTTPException

from crewboard.board.db import is_board_busy, is_disk_full
from crewboard.errors import InsufficientStorage, RequestError, ServiceUnavailable

log = logging.getLogger("crewboard.web")


def error_body(status: int, code: str, message: str, details: dict[str, Any] | None = None):
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    return response


def _http_code(exc: HTTPException) -> str:
    name = (exc.name or "error").lower().replace(" ", "_").replace("-", "_")
    return {"request_entity_too_large": "payload_too_large"}.get(name, name)


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(RequestError)
    async def _request_error(exc: RequestError):
        response = error_body(exc.status, exc.code, exc.message, exc.details)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException):
        status = exc.code or 500
        message = {
            404: "no such route",
            405: "method not allowed on this route",
            413: "request body too large",
        }.get(status, exc.description or exc.name)
        details: dict[str, Any] = {}
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        if status == 413 and limit:
            # Name the limit, so a client can say what would be accepted.
            message = f"request body too large: the limit is {limit:,} bytes"
            details["maxBytes"] = limit
        response = error_body(status, _http_code(exc), message, details)
        allowed = getattr(exc, "valid_methods", None)  # set by a 405 only
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))
        return response

    @app.errorhandler(Exception)
    async def _unhandled(exc: Exception):
        request_id = getattr(g, "request_id", "-")
        if is_disk_full(exc):
            g.error_reason = f"{InsufficientStorage.code}: {exc}"
            log.warning("request %s refused: no room left to write (%s)", request_id, exc)
            refused = InsufficientStorage(
                "the server has no room left to store this; nothing was written. "
                "Send it again once space has been freed"
            )
            return await _request_error(refused)
        if is_board_busy(exc):
            g.error_reason = f"{ServiceUnavailable.code}: {exc}"
            log.warning(
                "request %s refused: the board did not answer in time (%s)", request_id, exc
            )
            busy = ServiceUnavailable(
                "the board did not answer in time; nothing was changed. Try again shortly"
            )
            return await _request_error(busy)
        g.error_reason = f"internal_error: {type(exc).__name__}"
        log.error("unhandled error in request %s", request_id, exc_info=exc)
        response = error_body(
            500,
            "internal_error",
            "the server hit an unexpected error; quote the request id when reporting it",
            {"requestId": request_id},
        )
        return response
