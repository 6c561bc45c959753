"""A webhook receiver on a loopback port for tests: a real HTTP server (the
standard library's, on a thread) that records every request it gets and
answers each as a script says, so a test can make it fail, hang past the
sender's timeout, and recover."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG = "hang"  # take the request and never answer (until the receiver closes)


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    answer: int | str  # the status sent, or HANG

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    """``url`` takes POSTs; ``answer(nth_attempt_of_this_id)`` picks each answer."""

    def __init__(self, answer: Callable[[int], int | str]) -> None:
        self.answer = answer
        self.received: list[Received] = []
        self.url = ""
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def attempts(self, message_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.message_id == message_id]

    def accepted(self) -> list[Received]:
        """The requests answered 2xx, in order."""
        with self._lock:
            return [r for r in self.received if isinstance(r.answer, int) and r.answer < 300]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length", "0"))
        body = handler.rfile.read(length)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            nth = 1 + sum(1 for r in self.received if r.message_id == headers.get("webhook-id"))
            answer = self.answer(nth)
            self.received.append(Received(headers, body, answer))
        if answer == HANG:
            # Held until the sender gives up on it and the test ends.
            self._closing.wait()
            return
        assert isinstance(answer, int)
        handler.send_response(answer)
        handler.send_header("content-length", "0")
        handler.end_headers()


@contextmanager
def receiving(answer: Callable[[int], int | str]) -> Iterator[Receiver]:
    """A receiver on 127.0.0.1 at an ephemeral port for the block."""
    receiver = Receiver(answer)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            receiver._handle(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/crewboard"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver._closing.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
