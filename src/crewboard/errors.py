"""Every error the product raises on purpose, in one tree.

::

    CrewboardError            something crewboard refuses or cannot do
    ├── ConfigError           the operator's configuration is wrong
    └── RequestError          the caller's request cannot be served as sent
        ├── BadRequest        400  a body that does not parse or has the wrong shape
        ├── Unauthorized      401  not signed in, or credentials no good
        ├── Forbidden         403  signed in, but not allowed
        ├── NotFound          404  no such thing, or not the caller's to see
        ├── Conflict          409  valid, but the thing's state forbids it
        ├── UriTooLong        414  the URL is longer than the server reads
        ├── ValidationFailed  422  well-formed, but a field is wrong
        ├── TooManyRequests   429  wait ``Retry-After`` seconds first
        ├── HeaderFieldsTooLarge
        │                     431  the request's headers are larger than the server reads
        ├── ServiceUnavailable
        │                     503  the board did not answer in time; send it again
        └── InsufficientStorage
                              507  no room left to store the write; nothing was written

A :class:`RequestError` is the caller's to fix (or, for 503, to send again
shortly; for 507, once the operator has freed space): the web seam
(``web/errors.py``) answers it with its ``status`` and ``code`` in the one JSON
error shape, and the CLI prints its message. Anything else that escapes a
request is the server's fault: a 500 with a request id, the traceback in the
server log. Library errors are translated where they are caught:
``raise NotFound(...) from exc``.
"""

from __future__ import annotations

from typing import Any


class CrewboardError(Exception):
    """Base of every error the product raises on purpose."""


class ConfigError(CrewboardError):
    """The operator's configuration is wrong (a bad variable, toml or preset)."""


class RequestError(CrewboardError):
    """The caller's fault: answered as JSON with ``status`` and ``code``;
    ``details`` goes into the body, ``headers`` onto the response."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}
        self.headers: dict[str, str] = {}


class BadRequest(RequestError):
    """The caller sent a body that cannot be parsed or has the wrong shape."""

    status, code = 400, "bad_request"


class Unauthorized(RequestError):
    """The caller is not signed in (or their credentials are no good)."""

    status, code = 401, "unauthorized"


class Forbidden(RequestError):
    """The caller is signed in but may not do this."""

    status, code = 403, "forbidden"


class NotFound(RequestError):
    """The caller named something that does not exist, or that is not theirs."""

    status, code = 404, "not_found"

    def __init__(self, message: str = "not found", details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details)


class Conflict(RequestError):
    """The request is valid but the thing is in a state that forbids it
    (a job still running, a turn already in progress)."""

    status, code = 409, "conflict"


class UriTooLong(RequestError):
    """The caller sent a URL (path and query) longer than the server reads."""

    status, code = 414, "uri_too_long"


class ValidationFailed(RequestError):
    """The caller's input is well-formed but wrong; ``fields`` maps each bad
    field to what is wrong with it, and ``limits`` each field that is too
    long to its ``maxLength`` and actual ``length``."""

    status, code = 422, "validation_failed"

    def __init__(
        self,
        message: str,
        fields: dict[str, str] | None = None,
        *,
        limits: dict[str, dict[str, int]] | None = None,
    ) -> None:
        self.fields = fields or {}
        details: dict[str, object] = {"fields": self.fields} if self.fields else {}
        if limits:
            details["limits"] = limits
        super().__init__(message, details)


class TooManyRequests(RequestError):
    """The caller must wait ``retry_after_s`` before trying again."""

    status, code = 429, "too_many_requests"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, {"retryAfter": retry_after_s})
        self.headers = {"Retry-After": str(retry_after_s)}


class HeaderFieldsTooLarge(RequestError):
    """The caller sent more header bytes than the server reads (a cookie
    grown too large, say)."""

    status, code = 431, "header_fields_too_large"


class ServiceUnavailable(RequestError):
    """The board could not serve the request in time (a statement ran past
    its time limit behind a lock, no database connection was free, the
    connection was lost). Not the caller's fault: whatever the request was
    writing rolled back, and the same request may succeed a moment later."""

    status, code = 503, "service_unavailable"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, {"retryAfter": retry_after_s})
        self.headers = {"Retry-After": str(retry_after_s)}


class InsufficientStorage(RequestError):
    """The server has no room left to store what the request would write
    (its disk, or its database's, is full). Not the caller's fault, but not a
    crash either: nothing was written, and the same request succeeds once the
    operator frees space."""

    status, code = 507, "insufficient_storage"
