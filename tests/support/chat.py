"""Helpers for tests of chat sessions over HTTP: sending a message and
collecting its turn, replaying a session, holding a turn's stream open on a
bare socket (to read part of it, or hang up), and finding the runner
processes of this (test) process. Frames are parsed by
:mod:`tests.support.sse_client`."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from crewboard.forkserver import TEMPLATE_MODULE as TEMPLATE
from tests.support.sse_client import Frame, RawStream, collect
from tests.support.supervisor import children_running
from tests.support.waits import wait_for

TURN_TIMEOUT_S = 30.0


async def create_session(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    fields.setdefault("agent", "assistant")
    response = await client.post("/api/session/create", json=fields)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def stream(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> tuple[httpx.Response, list[Frame]]:
    """Open a stream and read it to its end. A non-200 answer is read whole
    and returned with no frames."""
    with trio.fail_after(TURN_TIMEOUT_S):
        async with client.stream(method, url, **kwargs) as response:
            if response.status_code != 200:
                await response.aread()
                return response, []
            return response, await collect(response, timeout_s=TURN_TIMEOUT_S)


async def send(client: httpx.AsyncClient, session_id: int, message: str) -> list[Frame]:
    """Send one message and return the whole turn's frames."""
    response, frames = await stream(
        client, "POST", f"/api/session/newUserMessage/{session_id}", json={"message": message}
    )
    assert response.status_code == 200, response.text
    return frames


async def replay(
    client: httpx.AsyncClient, name: str, last_event_id: int | str | None = None
) -> list[Frame]:
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    response, frames = await stream(client, "GET", f"/api/session/replay/{name}", headers=headers)
    assert response.status_code == 200, response.text
    return frames


@asynccontextmanager
async def open_turn(
    client: httpx.AsyncClient, session_id: int, message: str
) -> AsyncIterator[RawStream]:
    """Send a message with ``client``'s credentials over a bare socket and
    hold the turn's stream open: read it frame by frame, or leave the block
    to hang up."""
    base = str(client.base_url).rstrip("/")
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = json.dumps({"message": message}).encode()
    lines = [
        f"POST /api/session/newUserMessage/{session_id} HTTP/1.1",
        f"Host: {host}:{port}",
        f"Origin: {base}",
        "Accept: text/event-stream",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if client.cookies:
        lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in client.cookies.items()))
    if "authorization" in client.headers:
        lines.append(f"Authorization: {client.headers['authorization']}")
    sock = await trio.open_tcp_stream(host, port)
    try:
        await sock.send_all(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        raw = RawStream(sock)
        with trio.fail_after(10):
            await raw.read_head()
        assert raw.status == 200, raw.status
        yield raw
    finally:
        await sock.aclose()


async def next_chunk(raw: RawStream, kind: str, timeout_s: float = TURN_TIMEOUT_S) -> Frame:
    """Read frames until a chunk of record type ``kind``."""
    with trio.fail_after(timeout_s):
        while (frame := await raw.next_frame()) is not None:
            if frame.type == "chunk" and frame.data["type"] == kind:
                return frame
    raise AssertionError(f"the stream ended before a {kind} chunk")


async def rest_of(raw: RawStream, timeout_s: float = TURN_TIMEOUT_S) -> list[Frame]:
    """Every frame left, up to the end of the stream."""
    frames = []
    with trio.fail_after(timeout_s):
        while (frame := await raw.next_frame()) is not None:
            frames.append(frame)
    return frames


def runner_pids() -> list[int]:
    """The chat runners of the web app running in this test's process: forked
    ones are children of its runner template, a child of ours; spawned ones
    (if the template is down) are our own children."""
    me = os.getpid()
    forked = [
        pid
        for template in children_running(me, TEMPLATE)
        for pid in children_running(template, TEMPLATE)
    ]
    return forked + children_running(me, "crewboard.runner")


async def wait_for_runner(timeout_s: float = 10.0) -> int:
    """The pid of the one runner this process has, once it exists."""
    pids = await wait_for(runner_pids, timeout_s, "a runner process")
    assert len(pids) == 1, pids
    return pids[0]
