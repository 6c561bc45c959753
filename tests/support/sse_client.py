"""Reading server-sent events in tests, with a deadline on every wait.

:func:`collect` reads an httpx streaming response to its end (a finite
stream: a job's ends after ``done``). For streams a test leaves early (a
client going away, the endless change feed) :func:`open_raw_stream` speaks
HTTP/1.1 over a plain trio socket, so leaving is just closing the socket —
an httpx stream left early hands its body generators to the garbage
collector, which the test suite treats as an error.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio


@dataclass
class Frame:
    id: str | None
    type: str
    data: Any


@dataclass
class _Parser:
    """Turns SSE lines into frames; comment lines go to ``pings``."""

    pings: list[str] = field(default_factory=list)
    event_id: str | None = None
    data: list[str] = field(default_factory=list)

    def line(self, line: str) -> Frame | None:
        if line == "":
            frame = None
            if self.data:
                payload = json.loads("\n".join(self.data))
                frame = Frame(self.event_id, payload["type"], payload["data"])
            self.event_id, self.data = None, []
            return frame
        if line.startswith(":"):
            self.pings.append(line)
        elif line.startswith("id:"):
            self.event_id = line[3:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].lstrip())
        return None


async def collect(
    response: httpx.Response, *, until: str | None = None, timeout_s: float = 10.0
) -> list[Frame]:
    """Every frame until the stream ends; with ``until``, the stream must end
    right after a frame of that type. Fails after ``timeout_s``."""
    parser = _Parser()
    got: list[Frame] = []
    lines = response.aiter_lines()
    with trio.fail_after(timeout_s):
        async with aclosing(lines):
            async for line in lines:
                frame = parser.line(line)
                if frame is not None:
                    if got and got[-1].type == until:
                        raise AssertionError(f"a frame after {until}: {frame}")
                    got.append(frame)
    if until is not None:
        assert got and got[-1].type == until, got
    return got


class RawStream:
    """An SSE response read off a socket: ``status``, ``headers``, then
    frames via :meth:`next_frame` / :meth:`take`."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = b""
        self._body = b""
        self._chunked = False
        self.parser = _Parser()
        self.status = 0
        self.headers: dict[str, str] = {}

    @property
    def pings(self) -> list[str]:
        return self.parser.pings

    async def _fill(self) -> bool:
        data = await self._stream.receive_some(65536)
        if not data:
            return False
        self._buffer += data
        return True

    async def read_head(self) -> None:
        while b"\r\n\r\n" not in self._buffer:
            if not await self._fill():
                raise ConnectionError("closed before the response head")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"

    async def _more_body(self) -> bool:
        """Move the next piece of body into ``_body``; False at its end."""
        if not self._chunked:
            if not self._buffer and not await self._fill():
                return False
            self._body += self._buffer
            self._buffer = b""
            return True
        while b"\r\n" not in self._buffer:
            if not await self._fill():
                return False
        size_line, rest = self._buffer.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return False
        while len(rest) < size + 2:
            if not await self._fill():
                return False
            rest = self._buffer.split(b"\r\n", 1)[1]
        self._body += rest[:size]
        self._buffer = rest[size + 2 :]
        return True

    async def next_frame(self) -> Frame | None:
        """The next frame, or None when the stream ends."""
        while isinstance(item := await self._next_item(), str):
            pass
        return item

    async def _next_item(self) -> Frame | str | None:
        """The next frame or ping (a comment line), or None at the end."""
        while True:
            while b"\n" in self._body:
                raw, self._body = self._body.split(b"\n", 1)
                line = raw.decode().rstrip("\r")
                frame = self.parser.line(line)
                if frame is not None:
                    return frame
                if line.startswith(":"):
                    return line
            if not await self._more_body():
                return None

    async def take(self, count: int, timeout_s: float = 10.0) -> list[Frame]:
        """The next ``count`` frames (fewer if the stream ends first)."""
        got: list[Frame] = []
        with trio.fail_after(timeout_s):
            while len(got) < count:
                frame = await self.next_frame()
                if frame is None:
                    break
                got.append(frame)
        return got

    async def frames_until_pings(self, count: int, timeout_s: float = 10.0) -> list[Frame]:
        """The frames that arrive before ``count`` more pings (what a stream
        sends after a quiet spell); fails if the stream ends first."""
        got: list[Frame] = []
        pinged = 0
        with trio.fail_after(timeout_s):
            while pinged < count:
                item = await self._next_item()
                if item is None:
                    raise AssertionError(f"the stream ended after {pinged} ping(s): {got}")
                if isinstance(item, str):
                    pinged += 1
                else:
                    got.append(item)
        return got


@asynccontextmanager
async def open_raw_stream(
    base_url: str, path: str, *, client: httpx.AsyncClient | None = None, **headers: str
) -> AsyncIterator[RawStream]:
    """GET ``path`` as an SSE stream with ``client``'s session cookie (if
    any) and extra ``headers`` (``Last_Event_ID="5"`` → ``Last-Event-ID``)."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
    if client is not None and client.cookies:
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        lines.append(f"Cookie: {cookie}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    stream = await trio.open_tcp_stream(host, port)
    try:
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = RawStream(stream)
        with trio.fail_after(10):
            await raw.read_head()
        yield raw
    finally:
        await stream.aclose()
