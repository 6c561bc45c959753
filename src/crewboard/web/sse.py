"""Server-sent events: the one place that knows the wire format.

Frames are ``id: <id>\\ndata: {"type": KIND, "data": record}\\n\\n``, the
id a log record's ``seq`` (a job stream's ``<runId>:<seq>``) or an event id;
idle streams get a ``: ping`` comment every :data:`PING_S`; a client resumes
with ``Last-Event-ID``. Only stream responses lose Quart's response timeout.

A frame carrying a large text is a :class:`LazyFrame`: encoded once, on a
worker thread, by :func:`frame_bytes`, so no stream stalls the event loop.

What streams send comes from :mod:`crewboard.web.loghub` (session logs) and
:mod:`crewboard.web.board_feed` (the board's events).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from typing import Any

import trio
from quart import Response, request
from quart.globals import request_ctx

from crewboard import metrics

PING = b": ping\n\n"
PING_S = 15.0
# A client that reconnects waits this long first (the SSE `retry:` field).
RETRY_MS = 2000


# Frames whose texts add up to more than this are encoded off the event loop.
INLINE_FRAME_BYTES = 64 * 1024


def encode_frame(kind: str, data: Any, event_id: int | str | None = None) -> bytes:
    """One SSE event whose data is ``{"type": kind, "data": data}``."""
    payload = json.dumps({"type": kind, "data": data}, ensure_ascii=False, separators=(",", ":"))
    head = f"id: {event_id}\n" if event_id is not None else ""
    # JSON from json.dumps has no raw newlines, so one data: line always suffices.
    return f"{head}data: {payload}\n\n".encode()


def text_size(record: Any) -> int:
    """Roughly how many characters ``record``'s strings hold (its top-level
    ones: a log record keeps its texts there)."""
    if not isinstance(record, dict):
        return 0
    return sum(len(value) for value in record.values() if isinstance(value, str))


class LazyFrame:
    """A frame encoded when first needed, then kept: the hub memoises one per
    record, so every follower shares the one encoding. Two threads encoding
    it at once both produce the same bytes, so no lock is needed."""

    __slots__ = ("_encode", "_encoded", "_record", "size")

    def __init__(self, encode: Callable[[Any], bytes], record: Any) -> None:
        self._encode = encode
        self._record = record
        self._encoded: bytes | None = None
        self.size = text_size(record)

    def encoded(self) -> bytes | None:
        return self._encoded

    def encode(self) -> bytes:
        if self._encoded is None:
            self._encoded = self._encode(self._record)
        return self._encoded


async def frame_bytes(frames: Sequence[bytes | LazyFrame]) -> bytes:
    """``frames`` as one chunk of the stream: encoded inline while their
    texts are small, on a worker thread once they are large."""
    pending = [f for f in frames if isinstance(f, LazyFrame) and f.encoded() is None]
    if sum(f.size for f in pending) > INLINE_FRAME_BYTES:
        await trio.to_thread.run_sync(lambda: [f.encode() for f in pending])
    return b"".join(f if isinstance(f, bytes) else f.encode() for f in frames)


async def encode_frame_async(kind: str, data: Any, event_id: int | str | None = None) -> bytes:
    """:func:`encode_frame`, on a worker thread when ``data`` holds large texts."""
    if text_size(data) > INLINE_FRAME_BYTES:
        return await trio.to_thread.run_sync(encode_frame, kind, data, event_id)
    return encode_frame(kind, data, event_id)


def resume_token() -> str | None:
    """What the client sent to resume from: the ``Last-Event-ID`` header (or a
    ``lastEventId`` query parameter, for clients that cannot set headers),
    stripped; None when it sends none or something too long to be an id."""
    raw = (request.headers.get("Last-Event-ID") or request.args.get("lastEventId") or "").strip()
    return raw if raw and len(raw) <= 40 else None


def parse_id(raw: str | None) -> int | None:
    """A plain non-negative id, or None for anything else."""
    if raw is not None and raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return None


def resume_id() -> int | None:
    """Where the client asks to resume, as a plain non-negative id (see
    :func:`resume_token`); None when it sends none, or anything else."""
    return parse_id(resume_token())


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
    stream = request.blueprint or "other"

    async def framed() -> AsyncIterator[bytes]:
        async with context:
            with metrics.sse_subscriber(stream):
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
