"""The runner process: read the spec, run the agent loop, exit with a code that
says how the run ended. Owns the process-level contract a launcher relies on.

Exit codes, each after its terminal record in the log:

====  ==============================================================
0     ``final_result``
1     ``error`` (the provider failed, the step limit, a crash, or the
      parent went away: EOF on stdin)
2     the spec was malformed (an ``error`` record if it named a logPath)
3     ``blocked``
75    its lease lapsed (``runner/lease.py``): ``error {"interrupted": true}``
143   SIGTERM: ``error {"message": "run cancelled (SIGTERM)", "cancelled": true}``
====  ==============================================================

A control thread watches stdin and the signals, so the runner stops at once
whatever the main thread is blocked in. EOF on stdin means the parent died;
after the spec, a job runner's supervisor writes a line there at each
renewal of the run's lease (an empty one) and, where it ships the run's
records into the board, after each shipment (the highest seq the board
holds). The process is made non-dumpable before the spec (and its API key)
is read, which closes ``/proc/<runner>/environ`` and ``/proc/<runner>/mem``
to its tools.
"""

from __future__ import annotations

import _thread
import json
import os
import select
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from crewboard.nodump import make_non_dumpable
from crewboard.runner.lease import LeaseWatch
from crewboard.runner.session_log import RunLog
from crewboard.runner.settle import Acks
from crewboard.runner.spec import RunnerSpec, SpecError, find_log_path, parse_spec
from crewboard.runspec import LEASE_LAPSED_EXIT

EXIT_ERROR, EXIT_BAD_SPEC, EXIT_BLOCKED, EXIT_SIGTERM, EXIT_SIGINT = 1, 2, 3, 143, 130
_EXIT_BY_TERMINAL = {"final_result": 0, "blocked": EXIT_BLOCKED, "error": EXIT_ERROR}
LEASE_LAPSED = "run interrupted: its lease lapsed (its supervisor stopped renewing it)"


def read_spec_line(fd: int = 0) -> bytes:
    """The first line of stdin (the spec), without reading past it more than
    one buffer's worth; what follows is never needed."""
    parts: list[bytes] = []
    while True:
        data = os.read(fd, 1 << 16)
        if not data:
            break
        newline = data.find(b"\n")
        if newline >= 0:
            parts.append(data[:newline])
            break
        parts.append(data)
    return b"".join(parts)


class Told:
    """What a job runner's supervisor tells it on stdin after the spec, a
    line each: an empty line renews the run's lease (``lease``), a number
    is the highest seq the board holds (``acks``)."""

    def __init__(self, lease: LeaseWatch | None = None, acks: Acks | None = None) -> None:
        self.lease = lease
        self.acks = acks
        self._partial = b""

    def feed(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            if not line:
                if self.lease is not None:
                    self.lease.renewed()
            elif line.isdigit() and self.acks is not None:
                self.acks.tell(int(line))


class Control:
    """The control thread: ends the run at once when the parent goes away
    (EOF on stdin) or a SIGTERM/SIGINT arrives, and when the run's lease
    lapses (``lease``), with the right terminal record; passes on what the
    supervisor tells on stdin (:class:`Told`)."""

    def __init__(
        self,
        log: RunLog,
        on_exit: Callable[[], None] | None = None,
        lease: LeaseWatch | None = None,
        acks: Acks | None = None,
    ) -> None:
        self.log = log
        self.on_exit = on_exit
        self.lease = lease
        self.told = Told(lease, acks)
        self._wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(wakeup_w, False)
        # Python's C-level handler writes the signal number to this pipe the
        # moment the signal lands, whatever the main thread is doing.
        signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)

    def start(self) -> None:
        # A bare thread: threading.Thread.start() waits until the new thread
        # has been scheduled, a context switch before the run's first record.
        # Nothing is lost meanwhile: the wake-up pipe and stdin hold what
        # arrives until the thread polls them.
        _thread.start_new_thread(self._serve, ())

    def _serve(self) -> None:
        poller = select.poll()
        poller.register(0, select.POLLIN)
        poller.register(self._wakeup_r, select.POLLIN)
        timeout_ms = None if self.lease is None else self.lease.every_s * 1000
        while True:
            if self.lease is not None and self.lease.lapsed():
                self.stop(LEASE_LAPSED, LEASE_LAPSED_EXIT, interrupted=True)
            for fd, _ in poller.poll(timeout_ms):
                if fd == self._wakeup_r:
                    signums = os.read(self._wakeup_r, 64)
                    if signal.SIGTERM in signums:
                        self.stop("run cancelled (SIGTERM)", EXIT_SIGTERM, cancelled=True)
                    if signal.SIGINT in signums:
                        self.stop("run cancelled (SIGINT)", EXIT_SIGINT, cancelled=True)
                else:
                    data = os.read(0, 1 << 16)
                    if not data:  # POLLHUP or EOF alike
                        self.stop("parent went away", EXIT_ERROR)
                    self.told.feed(data)

    def stop(self, message: str, code: int, **fields: Any) -> NoReturn:
        if not self.log.finish("error", message=message, **fields):
            code = exit_code(self.log.terminal)  # the run had just ended on its own
        if self.on_exit is not None:
            self.on_exit()
        os._exit(code)


def exit_code(terminal: dict[str, Any] | None) -> int:
    if terminal is None:
        return EXIT_ERROR
    return _EXIT_BY_TERMINAL.get(str(terminal.get("type")), EXIT_ERROR)


def _bad_spec(message: str, raw: Any) -> NoReturn:
    print(f"crewboard runner: {message}", file=sys.stderr, flush=True)
    log_path = find_log_path(raw)
    if log_path is not None:
        try:
            RunLog(log_path).finish("error", message=message)
        except OSError:
            pass
    os._exit(EXIT_BAD_SPEC)


def load_spec() -> RunnerSpec:
    line = read_spec_line()
    if not line.strip():
        _bad_spec("no spec on stdin (expected one line of JSON)", None)
    try:
        raw = json.loads(line)
    except ValueError as exc:
        _bad_spec(f"the spec is not valid JSON: {exc}", None)
    try:
        return parse_spec(raw)
    except SpecError as exc:
        _bad_spec(f"bad runner spec: {exc}", raw)


def main() -> NoReturn:
    make_non_dumpable()
    spec = load_spec()
    secrets = (spec.model.api_key,) if spec.model.api_key else ()
    for server in spec.mcp.values():
        # Short values (a time zone, a flag) are not secrets worth hiding.
        values = (*server.env.values(), *server.headers.values())
        secrets += tuple(v for v in values if len(v) >= 8)
    stamp = {"requestId": spec.request_id} if spec.request_id else {}
    log = RunLog(spec.log_path, secrets=secrets, stamp=stamp)
    acks = Acks() if spec.ship_ack else None
    lease = LeaseWatch(spec.lease) if spec.lease is not None else None
    control = Control(log, lease=lease, acks=acks)
    control.start()
    # The first line goes out before the rest of the runner is imported: it is
    # what tells a follower the run has started.
    log.append("user_message", text=spec.prompt, **stamp)

    from crewboard.runner.tools.base import ToolContext

    ctx = ToolContext(spec.workspace, spec.artifact_dir, spec.limits, secrets=secrets)
    control.on_exit = ctx.kill_children
    try:
        from crewboard.runner.loop import AgentLoop
        from crewboard.runner.providers import ProviderError, open_transport

        try:
            transport = open_transport(spec.model)
        except ProviderError as exc:
            log.finish("error", message=str(exc), providerError=True)
            code = EXIT_ERROR
        else:
            code = AgentLoop(spec, log, transport, ctx, acks=acks).run()
    except BaseException as exc:
        import traceback

        traceback.print_exc()
        log.finish("error", message=f"the runner failed: {type(exc).__name__}: {exc}")
        code = exit_code(log.terminal)
    ctx.kill_children()
    sys.stderr.flush()
    os._exit(code)
