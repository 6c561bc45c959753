"""Limits on a request's head, checked before anything else reads it: the
URL's length (414), the headers' size (431), and no control character in the
path (404: no route or resource has one) or in an API query parameter (422
naming it). Each answer has the one JSON
error shape.

Hypercorn refuses a head by itself only past much larger limits
(:data:`SERVER_HEAD_LIMIT_BYTES`, set in ``web/server.py``), so any head a
client may plausibly send reaches these checks and gets a JSON answer. Past
Hypercorn's limit, its HTTP/1.1 layer (h11) answers 431 with an empty body
and closes the connection, and its HTTP/2 layer resets the connection: a
head is refused there before any application code runs, and Hypercorn has
no hook to shape that answer.
"""

from __future__ import annotations

import unicodedata

from quart import request

from crewboard.errors import HeaderFieldsTooLarge, NotFound, UriTooLong, ValidationFailed

# Above what any documented request needs (three 4,000-character query
# parameters on /auth/google/callback, percent-encoded), far below what
# would cost anything to read.
MAX_URL_BYTES = 64 * 1024
MAX_HEADER_BYTES = 32 * 1024
# What Hypercorn buffers of a head before it refuses it itself: far above
# the limits above, so they are the ones clients meet.
SERVER_HEAD_LIMIT_BYTES = 1024 * 1024
# Where query parameters are the API's: refused here when they hold control characters.
API_PREFIXES = ("/api/", "/auth/")


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def check_request_head() -> None:
    scope = request.scope
    url_bytes = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
    if url_bytes > MAX_URL_BYTES:
        raise UriTooLong(
            f"the URL is {url_bytes} bytes; this server reads at most {MAX_URL_BYTES}",
            {"limit": MAX_URL_BYTES},
        )
    header_bytes = sum(len(name) + len(value) for name, value in scope.get("headers", ()))
    if header_bytes > MAX_HEADER_BYTES:
        raise HeaderFieldsTooLarge(
            f"the request's headers are {header_bytes} bytes; this server reads at most "
            f"{MAX_HEADER_BYTES} (a large cookie, perhaps)",
            {"limit": MAX_HEADER_BYTES},
        )
    if _has_control(request.path):
        raise NotFound("no such page or resource: its path holds a control character")
    if not request.path.startswith(API_PREFIXES):
        return  # a page's query is read by its script (or its route), which checks it
    bad = {
        key[:100]: "must not contain control characters"
        for key, value in request.args.items(multi=True)
        if _has_control(key) or _has_control(value)
    }
    if bad:
        raise ValidationFailed("some query parameters hold control characters", bad)
