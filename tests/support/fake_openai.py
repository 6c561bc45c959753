"""A fake OpenAI-compatible server on loopback that plays the real wire shapes:
streamed text, streamed tool calls (arguments split across deltas, parallel
calls), usage chunks, error bodies with their statuses, ``Retry-After``, a
stream cut off midway and a malformed chunk.

It is a real HTTP/1.1 server (stdlib, in a thread, chunked transfer encoding as
OpenAI sends it), so it serves sync tests, trio tests and runner subprocesses
alike::

    with fake_openai() as server:
        server.script(Reply.tools([("read_file", '{"path": "a.txt"}')]), Reply.text("done"))
        ... point a provider at server.base_url ...
        assert server.requests[0]["body"]["stream"] is True

Each ``POST /v1/chat/completions`` takes the next scripted reply; with none
left it streams an echo of the last user message. ``GET /v1/models`` lists
``server.models`` (or plays ``server.models_reply`` when set).
:func:`silent_endpoint` is a provider that never answers.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def usage_chunk(prompt: int = 10, completion: int = 5) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "model": "fake-model",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


@dataclass
class Reply:
    """One scripted answer: a status, headers, and either a JSON body or a
    list of SSE ``data:`` payloads (dicts, or raw strings sent as they are)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    events: list[Any] = field(default_factory=list)
    done: bool = True  # send "data: [DONE]" at the end
    cut: bool = False  # drop the connection after the events, mid chunked body

    @classmethod
    def text(cls, text: str, pieces: int = 3, usage: tuple[int, int] = (10, 5)) -> Reply:
        size = max(1, -(-len(text) // pieces))
        events: list[Any] = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": text[i : i + size]}) for i in range(0, len(text), size)]
        events += [chunk({}, "stop"), usage_chunk(*usage)]
        return cls(events=events)

    @classmethod
    def tools(cls, calls: list[tuple[str, str]], usage: tuple[int, int] = (20, 8)) -> Reply:
        """Parallel tool calls, each with its arguments split into three deltas."""
        events: list[Any] = [chunk({"role": "assistant", "content": None})]
        for index, (name, arguments) in enumerate(calls):
            head = {
                "index": index,
                "id": f"call_fake_{index}",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            events.append(chunk({"tool_calls": [head]}))
            third = max(1, -(-len(arguments) // 3))
            for start in range(0, len(arguments), third):
                piece = arguments[start : start + third]
                events.append(
                    chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                )
        events += [chunk({}, "tool_calls"), usage_chunk(*usage)]
        return cls(events=events)

    @classmethod
    def error(cls, status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
        return cls(status=status, headers=headers or {}, body=body)

    @classmethod
    def cut_off(cls, text: str = "partial answer") -> Reply:
        """Some text, then the connection drops before the stream ends."""
        return cls(events=[chunk({"content": text})], done=False, cut=True)

    @classmethod
    def malformed(cls) -> Reply:
        return cls(events=[chunk({"content": "fine so far"}), "{this is not json"])


class FakeOpenAI:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.models: list[str] = ["fake-model"]
        self.models_reply: Reply | None = None
        self.models_asked = 0  # GET /models requests served
        self.lock = threading.Lock()
        self.base_url = ""

    def script(self, *replies: Reply) -> None:
        with self.lock:
            self.replies.extend(replies)

    def next_reply(self, body: Any) -> Reply:
        with self.lock:
            if self.replies:
                return self.replies.pop(0)
        last = ""
        for message in body.get("messages", []) if isinstance(body, dict) else []:
            if message.get("role") == "user":
                last = message.get("content") or ""
        return Reply.text(f"fake: {last}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        fake = self.server.fake
        if self.path.rstrip("/").endswith("/models"):
            with fake.lock:
                fake.models_asked += 1
            reply = fake.models_reply or Reply(
                body={"object": "list", "data": [{"id": m, "object": "model"} for m in fake.models]}
            )
            self._play(reply)
        else:
            self._play(Reply.error(404, f"no route {self.path}"))

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("content-length", "0"))
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        with fake.lock:
            fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._play(Reply.error(404, f"no route {self.path}"))
            return
        self._play(fake.next_reply(body))

    def _play(self, reply: Reply) -> None:
        if reply.body is not None or not reply.events:
            data = json.dumps(reply.body if reply.body is not None else {}).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        for event in reply.events:
            payload = event if isinstance(event, str) else json.dumps(event)
            self._send_chunk(f"data: {payload}\n\n".encode())
        if reply.cut:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if reply.done:
            self._send_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _send_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAI


@contextmanager
def fake_openai() -> Iterator[FakeOpenAI]:
    """A fake OpenAI endpoint on 127.0.0.1 (a free port) for the block's duration."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = FakeOpenAI()
    server.fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server.fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def silent_endpoint() -> Iterator[str]:
    """A loopback base URL that accepts connections and never answers: a
    provider slower than any timeout, with no race against the timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
