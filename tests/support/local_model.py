"""The real local model for tests: llama.cpp's server (xllamacpp) with the
SmolLM2-135M weights, started as ``python -m crewboard.localmodel`` the way
``crewboard serve`` starts it, and a steering proxy in front of it.

A 135M model answers what it likes, so tests never look at its words; they
shape its requests instead. The proxy forwards every request to the real
server byte for byte, streaming, except that ``steer`` may rewrite a chat
request's body first (cap ``max_tokens``, force a tool call, keep generating
past the end of an answer). It records each body it sent, each answer's bytes
as the server sent them, and the most chat requests it ever had open at once;
a ``gate`` holds chat requests until the test opens it. It passes a hang-up
of either side through to the other: a client that goes away closes the
upstream request (so the server sees the cancel), and a server that dies
mid-answer cuts the client's stream (no clean end).
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from crewboard import localmodel
from tests.support import need
from tests.support.procs import Proc

START_TIMEOUT_S = 60.0
# The model writes a tool call only when its answer starts with the Hermes
# marker; an assistant message left open is continued by llama.cpp.
TOOL_CALL_PREFILL = "<tool_call>\n"
CALL_TOKENS = 256
# A short answer that ends by itself: the first sentence, within this many tokens.
ANSWER_TOKENS = 200
SENTENCE_ENDS = [".", "!", "?", "\n\n"]


def need_local_model() -> Path:
    """The SmolLM2 GGUF file; skips (or fails under CREWBOARD_TEST_REQUIRE_ALL=1)
    when the server or the weights are not installed."""
    need(
        localmodel.server_installed(),
        f"xllamacpp is not installed ({localmodel.INSTALL_HINT})",
    )
    weights = localmodel.shipped_weights()
    need(weights, "the SmolLM2 weights are not installed (crewboard local-model install)")
    assert weights is not None
    return weights


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ModelServer:
    proc: Proc
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> dict[str, float]:
        """The server's Prometheus counters and gauges, by name."""
        text = httpx.get(self.base_url + "/metrics", timeout=10).text
        found = {}
        for line in text.splitlines():
            match = re.match(r"llamacpp:(\w+) ([0-9.eE+-]+)$", line)
            if match:
                found[match[1]] = float(match[2])
        return found


@contextmanager
def model_server(model: str = localmodel.SMOLLM2) -> Iterator[ModelServer]:
    """The real model server on a free loopback port, until the block ends."""
    port = free_port()
    argv = [sys.executable, "-m", "crewboard.localmodel", "--model", model, "--port", str(port)]
    with Proc(argv) as proc:
        proc.wait_for_line(lambda line: "listening on" in line, timeout_s=START_TIMEOUT_S)
        yield ModelServer(proc, port)


Steer = Callable[[dict[str, Any]], dict[str, Any]]


def text_only(max_tokens: int | None = ANSWER_TOKENS, **extra: Any) -> Steer:
    """Every chat request is offered no tools and answers in text: up to its
    first sentence end, so it finishes on its own ("stop"), well before
    ``max_tokens`` (None: the request's own). ``extra`` overrides (``stop=[]``,
    ``ignore_eos=True`` for an answer that only a cancel or ``max_tokens``
    ends)."""

    def steer(body: dict[str, Any]) -> dict[str, Any]:
        rest = {k: v for k, v in body.items() if k not in ("tools", "tool_choice")}
        cap = body.get("max_tokens") if max_tokens is None else max_tokens
        return {**rest, "max_tokens": cap, "stop": SENTENCE_ENDS, **extra}

    return steer


def force_tool(name: str, parameters: dict[str, Any] | None = None, max_tokens: int = 48) -> Steer:
    """The first step must call tool ``name``; the steps after it, offered no
    tools, answer in text.

    llama.cpp takes no named ``tool_choice`` object (it logs a type error and
    falls back to "auto"), and its "required" still lets a model write text
    before its call. So the step offers only that tool, says "required", and
    opens the answer with the tool-call marker: from there llama.cpp's grammar
    admits nothing but a call of that tool whose arguments match its schema,
    narrowed to ``parameters`` when given (a small model picks odd paths). The
    grammar admits some whitespace at every turn of the JSON, which a small
    model uses freely, so the call gets ``CALL_TOKENS`` to close."""

    def steer(body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        if any(m.get("role") == "tool" for m in messages):
            # Without tools: llama.cpp still parses a call the model writes
            # under tool_choice "none". A line's end ends the answer too: a
            # small model reading a tool's JSON may run on without a full stop.
            return text_only(stop=[*SENTENCE_ENDS, "\n"])(body)
        tools = [t for t in body.get("tools", []) if t["function"]["name"] == name]
        assert tools, f"the agent has no tool {name}"
        if parameters is not None:
            tools = [{**t, "function": {**t["function"], "parameters": parameters}} for t in tools]
        return {
            **body,
            "tools": tools,
            "tool_choice": "required",
            "max_tokens": CALL_TOKENS,
            # "required" admits one call or more; the first one ends the answer.
            "stop": ["</tool_call>"],
            "messages": [*messages, {"role": "assistant", "content": TOOL_CALL_PREFILL}],
        }

    return steer


@dataclass
class SteeringProxy:
    upstream: str
    steer: Steer | None = None
    sent: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    # The raw bytes of each chat answer, complete once its request has ended.
    answers: list[bytearray] = field(default_factory=list)
    # While set to an event, chat requests wait for it before going upstream.
    gate: threading.Event | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextmanager
    def counted(self) -> Iterator[None]:
        """One chat request open, from its arrival to its last byte."""
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self.lock:
                self.in_flight -= 1

    def chunks(self, index: int) -> list[dict[str, Any]]:
        """The JSON chunks answer ``index`` streamed, as the server sent them."""
        text = bytes(self.answers[index]).decode(errors="replace")
        return [
            json.loads(line[len("data: ") :])
            for line in text.splitlines()
            if line.startswith("data: {")
        ]

    def finish_reasons(self, index: int) -> list[str]:
        """The ``finish_reason`` values answer ``index`` streamed."""
        return [
            choice["finish_reason"]
            for chunk in self.chunks(index)
            for choice in chunk.get("choices", [])
            if choice.get("finish_reason")
        ]


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: SteeringProxy

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._forward("GET", None)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw) if raw else {}
        if not self.path.endswith("/chat/completions"):
            self._forward("POST", body)
            return
        with self.proxy.counted():
            if self.proxy.gate is not None:
                self.proxy.gate.wait(START_TIMEOUT_S)
            if self.proxy.steer is not None:
                body = self.proxy.steer(body)
            self.proxy.sent.append(body)
            self._forward("POST", body)

    def _forward(self, method: str, body: dict[str, Any] | None) -> None:
        url = self.proxy.upstream + self.path
        timeout = httpx.Timeout(300, connect=5)
        try:
            with (
                httpx.Client(timeout=timeout, trust_env=False) as client,
                client.stream(method, url, json=body) as response,
            ):
                answer = bytearray()
                if self.path.endswith("/chat/completions"):
                    self.proxy.statuses.append(response.status_code)
                    self.proxy.answers.append(answer)
                self.send_response(response.status_code)
                self.send_header("Content-Type", response.headers.get("content-type", ""))
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for piece in response.iter_raw():
                    answer += piece
                    # A client that hung up raises here, which closes the
                    # upstream request: the server sees the cancel.
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except (httpx.HTTPError, OSError):
            # The server died mid-answer (or the client left): cut the
            # client's stream with no clean end, as a dead server would.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@contextmanager
def steering_proxy(upstream: str, steer: Steer | None = None) -> Iterator[SteeringProxy]:
    proxy = SteeringProxy(upstream.rstrip("/"), steer)
    handler = type("Handler", (_ProxyHandler,), {"proxy": proxy})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    proxy.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def forced_call_ended_well(starts: list[dict], ends: list[dict], name: str) -> dict[str, Any]:
    """The first call, the one ``force_tool`` made the model write, is of
    ``name`` and ended without error, and every call that started ended; the
    first call's end. Calls after it are the model's own, written with no
    tools offered: a small model may get their arguments wrong, and the
    product hands that back to it as a tool error, so they are not judged."""
    assert starts and starts[0]["toolName"] == name, starts
    assert len(ends) == len(starts), (starts, ends)
    first = ends[0]
    assert first["toolName"] == name and not first.get("isError"), first
    return first
