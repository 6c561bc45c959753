"""Server-sent events: the one place that knows the wire format, and the hub
that tails session logs for every stream that follows one.

Frames are ``id: <seq>\\ndata: {"type": KIND, "data": record}\\n\\n``; idle
streams get a ``: ping`` comment every :data:`PING_S`; a client resumes with
``Last-Event-ID``. Only stream responses lose Quart's response timeout.

:class:`LogHub` runs ONE reader task per log file, however many clients
follow it: the reader polls a :class:`~crewboard.sessionlog.LogCursor` every
``poll_s`` while the file has followers, appends what it reads to a buffer
shared by all of them and wakes them through one :class:`trio.Event`. A
follower is a position in that buffer, not a queue, so a record costs one
read, one parse and (per frame encoder) one encoding, whatever the audience.
"""

from __future__ import annotations

import json
import logging
import os
from bisect import bisect_right
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from quart import Response, current_app, request
from quart.globals import request_ctx

from crewboard.sessionlog import LogCursor, Record, is_terminal
from crewboard.web.state import state

log = logging.getLogger(__name__)

PING = b": ping\n\n"
PING_S = 15.0
# A client that reconnects waits this long first (the SSE `retry:` field).
RETRY_MS = 2000
# Growth beyond this is read on a worker thread rather than on the event loop.
INLINE_READ_BYTES = 256 * 1024


# --- the wire format ----------------------------------------------------------


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


# --- the log hub --------------------------------------------------------------


@dataclass(eq=False)
class _Tail:
    """One log file being read, and what has been read of it so far."""

    path: Path
    cursor: LogCursor
    records: list[Record] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    encoded: dict[Callable[[Record], Any], list[Any]] = field(default_factory=dict)
    changed: trio.Event = field(default_factory=trio.Event)
    followers: int = 0
    closed: bool = False  # the reader stopped (shutdown or an error): no more records

    def publish(self, records: list[Record]) -> None:
        for record in records:
            seq = int(record.get("seq", 0))
            if self.seqs and seq <= self.seqs[-1]:
                continue  # a rewritten or duplicated line: followers saw it already
            self.records.append(record)
            self.seqs.append(seq)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        woken, self.changed = self.changed, trio.Event()
        woken.set()

    def take(self, start: int, encode: Callable[[Record], Any] | None) -> list[Any]:
        end = len(self.records)
        if encode is None:
            return self.records[start:end]
        done = self.encoded.setdefault(encode, [])
        if len(done) < end:
            done.extend(encode(r) for r in self.records[len(done) : end])
        return done[start:end]


class Following:
    """One follower of a log: an async iterator (not a generator, so leaving
    it early needs no ``aclose`` — though it has one — and never leaves a
    half-run generator behind). It joins the file's tail on its first step."""

    def __init__(
        self,
        hub: LogHub,
        path: Path,
        after_seq: int,
        *,
        encode: Callable[[Record], Any] | None = None,
        idle_s: float | None = None,
        until_terminal: bool = True,
    ) -> None:
        self._hub = hub
        self._path = path
        self._after_seq = after_seq
        self._encode = encode
        self.idle_s = idle_s  # may be changed while following
        self._until_terminal = until_terminal
        self._tail: _Tail | None = None
        self._position = 0
        self._done = False

    def __aiter__(self) -> Following:
        return self

    async def __anext__(self) -> list[Any] | None:
        # One flat coroutine down to trio's wait: thousands of followers idle
        # at once between records, and the cyclic GC walks what they hold.
        if self._done:
            raise StopAsyncIteration
        if self._tail is None:
            self._tail = self._hub._join(self._path)
        tail = self._tail
        while True:
            if self._position < len(tail.records):
                # Records at or before after_seq may arrive after we join.
                self._position = max(self._position, bisect_right(tail.seqs, self._after_seq))
            if self._position < len(tail.records):
                start, end = self._position, len(tail.records)
                if self._until_terminal:
                    for index in range(start, end):
                        if is_terminal(tail.records[index]):
                            self._leave()
                            return tail.take(start, self._encode)[: index + 1 - start]
                self._position = end
                return tail.take(start, self._encode)
            if tail.closed:
                self._leave()
                raise StopAsyncIteration
            if self.idle_s is None:
                await tail.changed.wait()
            else:
                with trio.move_on_after(self.idle_s) as idle:
                    await tail.changed.wait()
                if idle.cancelled_caught:
                    return None

    def _leave(self) -> None:
        if not self._done:
            self._done = True
            if self._tail is not None:
                self._tail.followers -= 1

    async def aclose(self) -> None:
        self._leave()

    def __del__(self) -> None:
        self._leave()


class FollowingRecords:
    """:class:`Following` one record at a time."""

    def __init__(self, batches: Following) -> None:
        self._batches = batches
        self._pending: list[Record] = []

    def __aiter__(self) -> FollowingRecords:
        return self

    async def __anext__(self) -> Record:
        while not self._pending:
            self._pending = list(await self._batches.__anext__() or [])
        return self._pending.pop(0)

    async def aclose(self) -> None:
        await self._batches.aclose()


class LogHub:
    """Follows session logs for any number of streams, one reader per file.

    >>> async for record in hub.follow(path, after_seq=12):
    ...     ...  # every record with seq > 12, ending after a terminal one

    Readers run in ``nursery`` (the web app's background nursery).
    """

    def __init__(self, nursery: trio.Nursery, poll_s: float = 0.025) -> None:
        self._nursery = nursery
        self.poll_s = poll_s
        self._tails: dict[Path, _Tail] = {}

    @property
    def files(self) -> int:
        """How many files have a reader right now."""
        return len(self._tails)

    def follow(self, path: str | os.PathLike[str], after_seq: int = 0) -> FollowingRecords:
        """Every record of the log after ``after_seq``, live, up to and
        including the first terminal record (then the iteration ends)."""
        return FollowingRecords(Following(self, Path(path), after_seq))

    def follow_batches(
        self,
        path: str | os.PathLike[str],
        after_seq: int = 0,
        *,
        encode: Callable[[Record], Any] | None = None,
        idle_s: float | None = None,
        until_terminal: bool = True,
    ) -> Following:
        """Like :meth:`follow`, in batches of whatever arrived together, each
        record passed through ``encode`` (memoised per record and encoder:
        every follower shares the work). With ``idle_s``, yields None after
        that long without records, so the caller can ping or look around;
        without ``until_terminal`` it keeps following past terminal records
        (a chat log's next turn)."""
        return Following(
            self,
            Path(path),
            after_seq,
            encode=encode,
            idle_s=idle_s,
            until_terminal=until_terminal,
        )

    def _join(self, path: Path) -> _Tail:
        tail = self._tails.get(path)
        if tail is None or tail.closed:
            tail = _Tail(path, LogCursor(path))
            self._tails[path] = tail
            # start_soon, not start: registering the tail and counting the
            # follower happen in one step, so no follower can see a tail
            # whose reader has already decided to stop.
            self._nursery.start_soon(self._serve_tail, tail, name=f"log reader {path.name}")
        tail.followers += 1
        return tail

    async def _serve_tail(self, tail: _Tail) -> None:
        try:
            while True:
                grown = _grown_by(tail)
                if grown:
                    if grown > INLINE_READ_BYTES:
                        records = await trio.to_thread.run_sync(tail.cursor.read_new)
                    else:
                        records = tail.cursor.read_new()
                    if records:
                        tail.publish(records)
                if tail.followers <= 0:
                    return
                ended = bool(tail.records) and is_terminal(tail.records[-1])
                # After a terminal record more is unlikely (a chat's next turn): look less often.
                await trio.sleep(self.poll_s * (10 if ended else 1))
                if tail.followers <= 0:
                    return
        except Exception:
            log.exception("reading %s failed; its followers are ended", tail.path)
        finally:
            if self._tails.get(tail.path) is tail:
                del self._tails[tail.path]
            tail.close()


def _grown_by(tail: _Tail) -> int:
    try:
        size = os.stat(tail.path).st_size
    except FileNotFoundError:
        return 0
    return size - tail.cursor.offset


def log_hub() -> LogHub:
    """The web process's hub, made on first use; its readers run in the
    app's background nursery (quart-trio's ``app.nursery``)."""
    extras = state().extras
    hub = extras.get("log_hub")
    if hub is None:
        hub = extras["log_hub"] = LogHub(current_app.nursery)  # type: ignore[attr-defined]
    return hub
