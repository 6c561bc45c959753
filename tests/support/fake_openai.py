"""A fake OpenAI-compatible server on loopback that plays the real wire shapes:
streamed text, streamed tool calls (arguments split across deltas, parallel
calls), usage chunks, error bodies with their statuses, ``Retry-After``, a
stream cut off midway and a malformed chunk.

It also plays the strict and odd behaviours of real servers, each a switch on
:class:`FakeOpenAI`:

- ``strict`` (on by default): an assistant message with ``tool_calls`` and
  ``content: null``, or a tool result that is not a string, is refused with
  llama-cpp-python's HTTP 500 (a pydantic message naming a server file);
- ``interrupt_on_second``: a running stream ends with ``data: [DONE]`` and no
  finish reason when another request arrives (llama-cpp-python's
  ``interrupt_requests``);
- ``reports_usage = False``: ``stream_options.include_usage`` is ignored and
  no usage is sent (llama-cpp-python);
- ``refuse_streamed_tool_choice``: a streamed request with tools and
  ``tool_choice: "auto"`` gets its headers, then an error event and the end of
  the connection (llama-cpp-python's ``chatml-function-calling``);
- ``max_tokens`` is always honoured: a text answer longer than it (counted in
  words) is cut and finishes with ``length``.

Non-streamed requests (``"stream": false``) get the scripted reply as one
``chat.completion`` body. ``max_in_flight`` records how many requests were
ever being answered at once.

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

import dataclasses
import json
import socket
import sys
import threading
import time
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
    list of SSE ``data:`` payloads (dicts, or raw strings sent as they are;
    bytes are sent as a whole SSE line)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    events: list[Any] = field(default_factory=list)
    done: bool = True  # send "data: [DONE]" at the end
    cut: bool = False  # drop the connection after the events, mid chunked body
    delay_s: float = 0.0  # pause before each event (or before a JSON body)
    hold: threading.Event | None = None  # answer only once this is set

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


# What llama-cpp-python's server answers (HTTP 500) to an assistant message
# whose content is null: its pydantic validation error, traceback path included.
PYDANTIC_NULL_CONTENT = (
    'Traceback: File "/srv/llama/venv/lib/python3.11/site-packages/llama_cpp/server/app.py", '
    "line 376, in create_chat_completion\n"
    "1 validation error for CreateChatCompletionRequest\n"
    "messages.{index}.typed-dict.content\n"
    "  Input should be a valid string [type=string_type, input_value=None, "
    "input_type=NoneType]\n"
    "    For further information visit https://errors.pydantic.dev/2.9/v/string_type"
)
REFUSED_STREAMED_TOOL_CHOICE = "Automatic streaming tool choice is not supported"


class FakeOpenAI:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.models: list[str] = ["fake-model"]
        self.models_reply: Reply | None = None
        self.models_asked = 0  # GET /models requests served
        self.lock = threading.Lock()
        self.base_url = ""
        self.strict = True
        self.interrupt_on_second = False
        self.reports_usage = True
        self.refuse_streamed_tool_choice = False
        self.in_flight = 0
        self.max_in_flight = 0
        self._running: set[threading.Event] = set()

    def refusal(self, body: Any) -> Reply | None:
        """The strict server's refusal of a request's shape, if it has one."""
        if not self.strict or not isinstance(body, dict):
            return None
        for index, message in enumerate(body.get("messages", [])):
            if not isinstance(message, dict):
                continue
            if (
                message.get("role") == "assistant"
                and message.get("tool_calls")
                and message.get("content", "") is None
            ):
                return Reply.error(500, PYDANTIC_NULL_CONTENT.format(index=index))
            if message.get("role") == "tool" and not isinstance(message.get("content"), str):
                return Reply.error(500, PYDANTIC_NULL_CONTENT.format(index=index))
        return None

    @contextmanager
    def answering(self) -> Iterator[threading.Event]:
        """Count one request in flight; the event is set if a later request
        interrupts it."""
        interrupted = threading.Event()
        with self.lock:
            if self.interrupt_on_second:
                for other in self._running:
                    other.set()
            self._running.add(interrupted)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield interrupted
        finally:
            with self.lock:
                self._running.discard(interrupted)
                self.in_flight -= 1

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
        with fake.answering() as interrupted:
            refusal = fake.refusal(body)
            if refusal is not None:
                self._play(refusal)
                return
            if not isinstance(body, dict):
                body = {}
            streamed = body.get("stream", False) is True
            if (
                streamed
                and fake.refuse_streamed_tool_choice
                and body.get("tools")
                and body.get("tool_choice") == "auto"
            ):
                error = {"error": {"message": REFUSED_STREAMED_TOOL_CHOICE, "code": 500}}
                self._play(Reply(events=[error], done=False, cut=True))
                return
            reply = fake.next_reply(body)
            if reply.events and reply.body is None:
                limit = body.get("max_tokens") or body.get("max_completion_tokens")
                events = _within(reply.events, limit)
                if not fake.reports_usage:
                    events = [e for e in events if not (isinstance(e, dict) and "usage" in e)]
                reply = dataclasses.replace(reply, events=events)
                if not streamed:
                    reply = _whole(reply)
            self._play(reply, interrupted)

    def _play(self, reply: Reply, interrupted: threading.Event | None = None) -> None:
        if reply.hold is not None:
            reply.hold.wait(30)
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
            if reply.delay_s:
                time.sleep(reply.delay_s)
            if interrupted is not None and interrupted.is_set():
                self._send_chunk(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            if isinstance(event, bytes):  # a raw SSE line, e.g. llama.cpp's "error: {...}"
                self._send_chunk(event + b"\n\n")
                continue
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


def _within(events: list[Any], limit: Any) -> list[Any]:
    """The events of a streamed answer cut at ``limit`` words of text, ending
    with finish reason ``length`` if they had to be cut."""
    if not isinstance(limit, int) or limit <= 0:
        return events
    kept: list[Any] = []
    words = 0
    for event in events:
        choices = event.get("choices") if isinstance(event, dict) else None
        content = choices[0].get("delta", {}).get("content") if choices else None
        if isinstance(content, str) and content:
            room = limit - words
            pieces = content.split(" ")
            if len([p for p in pieces if p]) > room:
                kept_text = " ".join(pieces[: max(room, 0)])
                if kept_text:
                    kept.append(chunk({"content": kept_text}))
                kept.append(chunk({}, "length"))
                kept += [e for e in events if isinstance(e, dict) and "usage" in e]
                return kept
            words += len([p for p in pieces if p])
        kept.append(event)
    return kept


def _whole(reply: Reply) -> Reply:
    """A streamed reply as the one ``chat.completion`` body a non-streamed
    request gets."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish = "stop"
    usage = None
    for event in reply.events:
        if not isinstance(event, dict):
            continue
        usage = event.get("usage") or usage
        for choice in event.get("choices", []):
            delta = choice.get("delta", {})
            if delta.get("content"):
                text.append(delta["content"])
            for piece in delta.get("tool_calls") or []:
                call = calls.setdefault(
                    piece["index"],
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = piece.get("id") or call["id"]
                function = piece.get("function", {})
                call["function"]["name"] += function.get("name", "")
                call["function"]["arguments"] += function.get("arguments", "")
            finish = choice.get("finish_reason") or finish
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "fake-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return Reply(
        status=reply.status,
        headers=reply.headers,
        body=body,
        delay_s=reply.delay_s,
        hold=reply.hold,
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (a cancelled run, a test that has
        # seen enough) is normal here; anything else is a bug worth a trace.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


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
