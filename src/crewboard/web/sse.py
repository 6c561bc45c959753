"""Server-sent events: the one place that knows the wire format.

Frames are ``id: <seq>\\ndata: {"type": KIND, "data": record}\\n\\n``; idle
streams get a ``: ping`` comment every :data:`PING_S`; a client resumes with
``Last-Event-ID``. Only stream responses lose Quart's response timeout.

What streams send comes from :mod:`crewboard.web.loghub` (session logs) and
:mod:`crewboard.web.board_feed` (the board's events).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import trio
from quart import Response, request
from quart.globals import request_ctx

PING = b": ping\n\n"
PING_S = 15.0
# A client that reconnects waits this long first (the SSE `retry:` field).
RETRY_MS = 2000


def encode_frame(kind: str, data: Any, event_id: int | None = None) -> bytes:
    """One SSE event whose data is ``{"type": kind, "data": data}``."""
    payload = json.dumps({"type": kind, "data": data}, ensure_ascii=False, separators=(",", ":"))
    head = f"id: {event_id}\n" if event_id is not None else ""
    # JSON from json.dumps has no raw newlines, so one data: line always suffices.
    return f"{head}data: {payload}\n\n".encode()


def resume_id() -> int | None:
    """Where the client asks to resume: the ``Last-Event-ID`` header (or a
    ``lastEventId`` query parameter, for clients that cannot set headers);
    None when it sends none, or anything but a plain non-negative id."""
    raw = request.headers.get("Last-Event-ID") or request.args.get("lastEventId") or ""
    raw = raw.strip()
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return None


def last_event_id() -> int:
    """:func:`resume_id`, with 0 (from the start) when there is none."""
    resumed = resume_id()
    return 0 if resumed is None else resumed


def stream_response(body: AsyncIterator[bytes]) -> Response:
    """A ``text/event-stream`` response over ``body``; it has no response
    timeout (streams may run for hours) and tells proxies not to buffer.
    ``body`` runs with the request's context (``current_app``, ``request``)
    although Quart sends it after the handler has returned."""

    # Like quart.stream_with_context, but one generator that closes ``body``
    # itself: a client going away must leave no generator half-run.
    context = request_ctx.copy()

    async def framed() -> AsyncIterator[bytes]:
        async with context:
            yield f"retry: {RETRY_MS}\n\n".encode()
            async with aclosing(body):  # type: ignore[type-var]
                async for chunk in body:
                    yield chunk

    response = Response(framed(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache, no-transform"
    response.headers["X-Accel-Buffering"] = "no"
    response.timeout = None
    return response


class Pinger:
    """Tells a stream when it has been quiet for :data:`PING_S`."""

    def __init__(self, every_s: float | None = None) -> None:
        self.every_s = PING_S if every_s is None else every_s
        self.last = trio.current_time()

    def sent(self) -> None:
        self.last = trio.current_time()

    def due(self) -> bool:
        if trio.current_time() - self.last >= self.every_s:
            self.last = trio.current_time()
            return True
        return False
