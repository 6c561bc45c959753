"""HTTP errors and the one JSON shape every error response takes:
``{"error": {"code", "message", "details"}}``.

Domain errors from ``crewboard.errors`` are translated here, at the seam, so
routes can simply raise them.
"""

from __future__ import annotations

import logging
from typing import Any

from quart import Quart, g, jsonify
from werkzeug.exceptions import HTTPException

from crewboard.errors import Conflict, NotFound, ValidationFailed

log = logging.getLogger("crewboard.web")


class ApiError(Exception):
    """An error answered to the client as JSON with ``status`` and ``code``."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.headers: dict[str, str] = {}


class BadRequest(ApiError):
    """The caller sent a body that cannot be parsed or has the wrong shape."""

    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    """The caller is not signed in (or their credentials are no good)."""

    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    """The caller is signed in but may not do this."""

    status, code = 403, "forbidden"


class ResourceNotFound(ApiError):
    """No such thing, or not the caller's to see."""

    status, code = 404, "not_found"


class StateConflict(ApiError):
    """The thing is in a state that forbids the request."""

    status, code = 409, "conflict"


class Unprocessable(ApiError):
    """The body parsed but its fields are wrong; ``details.fields`` says how."""

    status, code = 422, "validation_failed"


class TooManyRequests(ApiError):
    """The caller must wait ``retry_after_s`` before trying again."""

    status, code = 429, "too_many_requests"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, {"retryAfter": retry_after_s})
        self.headers = {"Retry-After": str(retry_after_s)}


def error_body(status: int, code: str, message: str, details: dict[str, Any] | None = None):
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    return response


def _http_code(exc: HTTPException) -> str:
    name = (exc.name or "error").lower().replace(" ", "_").replace("-", "_")
    return {"request_entity_too_large": "payload_too_large"}.get(name, name)


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(ApiError)
    async def _api_error(exc: ApiError):
        response = error_body(exc.status, exc.code, exc.message, exc.details)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(NotFound)
    async def _not_found(exc: NotFound):
        return error_body(404, "not_found", str(exc) or "not found")

    @app.errorhandler(Conflict)
    async def _conflict(exc: Conflict):
        return error_body(409, "conflict", str(exc))

    @app.errorhandler(ValidationFailed)
    async def _invalid(exc: ValidationFailed):
        return error_body(422, "validation_failed", str(exc), exc.details)

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException):
        status = exc.code or 500
        message = {
            404: "no such route",
            405: "method not allowed on this route",
            413: "request body too large",
        }.get(status, exc.description or exc.name)
        response = error_body(status, _http_code(exc), message)
        if status == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return response

    @app.errorhandler(Exception)
    async def _unhandled(exc: Exception):
        request_id = getattr(g, "request_id", "-")
        log.error("unhandled error in request %s", request_id, exc_info=exc)
        response = error_body(
            500,
            "internal_error",
            "the server hit an unexpected error; quote the request id when reporting it",
            {"requestId": request_id},
        )
        return response
