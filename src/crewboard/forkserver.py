"""Starting runners by forking a pre-imported template process
(:mod:`crewboard.runner.template`) instead of starting a new interpreter for
each one: a few milliseconds instead of tens, which is most of what a short
job or chat turn costs. Neutral ground: the supervisor and the web process
each own a :class:`ForkServer` of their own, and hand it to
:func:`crewboard.processes.run_runner`.

A forked runner keeps every property of a spawned one that matters to its
owner: its own process and process group (stopped as a group, its tools
with it; it stays in the template's session, which has no terminal), the
scrubbed environment, its spec as the
first line of a stdin pipe that only its owner writes to (EOF when the owner
dies, and the runner stops at once), and its stderr where its owner says.
:class:`ForkedRunner` is a :class:`crewboard.processes.RunnerProcess` like the
``trio.Process`` of a spawned runner, so
:func:`crewboard.processes.stop_process` stops it the same way (SIGTERM to the
group, grace, SIGKILL). The template reaps each runner and reports its exit
status at once, so a runner killed with ``kill -9`` is seen immediately.

If the template cannot start or dies, :meth:`ForkServer.start_runner` raises
:class:`crewboard.processes.TemplateUnavailable` and runners are spawned the
plain way.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from typing import Any

import trio

from crewboard.processes import (
    SpecDocument,
    TemplateUnavailable,
    encode_spec,
    runner_env,
)

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
# The template's module: ``python -m`` it with the socket's file descriptor.
TEMPLATE_MODULE = "crewboard.runner.template"


class ForkedRunner:
    """A runner forked by the template: ``pid``, ``returncode``, ``wait()``
    and ``stdin``, as on ``trio.Process``."""

    def __init__(self, pid: int, stdin: trio.lowlevel.FdStream) -> None:
        self.pid = pid
        self.stdin: trio.lowlevel.FdStream | None = stdin
        self.returncode: int | None = None
        self._exited = trio.Event()

    def _set_exited(self, status: int) -> None:
        if self.returncode is None:
            self.returncode = status
        self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode


class ForkServer:
    """The owner's side of the runner template: starts it (:meth:`serve`),
    asks it for runners (:meth:`start_runner`) and relays their exits."""

    def __init__(self) -> None:
        self._sock: trio.socket.SocketType | None = None
        self._next_id = 0
        self._pending: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._runners: dict[int, ForkedRunner] = {}
        # Exit reports that beat their fork reply (a runner that died at once).
        self._early_exits: dict[int, int] = {}
        self._lock = trio.Lock()

    @property
    def available(self) -> bool:
        return self._sock is not None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the template and relay its replies until cancelled. Ready
        (``task_status.started()``) once the template has imported the
        runner, or once it failed to start (runners are then spawned)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            try:
                proc = await trio.lowlevel.open_process(
                    [sys.executable, "-m", TEMPLATE_MODULE, str(theirs.fileno())],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    start_new_session=True,
                    env=runner_env(),
                    pass_fds=(theirs.fileno(),),
                )
            finally:
                theirs.close()
        except OSError as exc:
            ours.close()
            log.warning("cannot start the runner template (%s); spawning runners", exc)
            task_status.started()
            return
        sock = trio.socket.from_stdlib_socket(ours)
        ready: object = None
        try:
            with trio.move_on_after(START_TIMEOUT_S):
                ready = json.loads(await sock.recv(65536) or b"{}")
            if not (isinstance(ready, dict) and ready.get("ready")):
                log.warning("the runner template did not start; spawning runners")
                task_status.started()
                return
            self._sock = sock
            task_status.started()
            await self._relay(sock)
            log.warning("the runner template exited (%s); spawning runners", proc.returncode)
        finally:
            self._sock = None
            with trio.CancelScope(shield=True):
                await self._close(proc, sock)

    async def _relay(self, sock: trio.socket.SocketType) -> None:
        while True:
            try:
                data = await sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            message = json.loads(data)
            if "exited" in message:
                pid, status = int(message["exited"]), int(message["status"])
                runner = self._runners.pop(pid, None)
                if runner is not None:
                    runner._set_exited(status)
                else:
                    self._early_exits[pid] = status
            elif "id" in message:
                reply = self._pending.pop(int(message["id"]), None)
                if reply is not None:
                    try:
                        reply.send_nowait(message)
                    except trio.BrokenResourceError:
                        pass  # its caller was cancelled and closed the runner's stdin

    async def _close(self, proc: trio.Process, sock: trio.socket.SocketType) -> None:
        sock.close()
        if proc.stdin is not None:
            await proc.stdin.aclose()  # EOF: the template exits
        with trio.move_on_after(5):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for reply in self._pending.values():
            reply.close()
        self._pending.clear()
        # Runners forked by a template that is gone: nobody will report their
        # exit, so watch them directly.
        for runner in list(self._runners.values()):
            _watch_orphan(runner)
        self._runners.clear()

    async def start_runner(
        self,
        spec: SpecDocument,
        *,
        stderr: int | None = None,
    ) -> ForkedRunner:
        """Fork a runner and hand it its spec; its stderr goes to the file
        descriptor ``stderr`` (default: nowhere). TemplateUnavailable if the
        template is not running."""
        sock = self._sock
        if sock is None:
            raise TemplateUnavailable("the runner template is not running")
        stdin_r, stdin_w = os.pipe()
        # A spec that fits the pipe's buffer goes in before the fork, so the
        # runner reads it at once instead of waiting for the fork's reply to
        # come back here (one wake-up less between claim and first log line).
        # What does not fit follows once the runner exists.
        rest = _write_what_fits(stdin_w, encode_spec(spec))
        if stderr is not None:
            stderr_fd = os.dup(stderr)
        else:
            stderr_fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        self._next_id += 1
        request_id = self._next_id
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._pending[request_id] = send
        try:
            async with self._lock:
                await sock.sendmsg(
                    [json.dumps({"id": request_id}).encode()],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _fds(stdin_r, stderr_fd))],
                )
        except OSError as exc:
            os.close(stdin_w)
            raise TemplateUnavailable(f"the runner template went away: {exc}") from exc
        finally:
            os.close(stdin_r)
            os.close(stderr_fd)
        try:
            # Bounded: runners are started in a shielded scope, and a template
            # that stopped answering must not hold its owner's shutdown.
            with receive, trio.fail_after(START_TIMEOUT_S):
                reply = await receive.receive()
        except trio.EndOfChannel:
            os.close(stdin_w)
            raise TemplateUnavailable("the runner template went away") from None
        except trio.TooSlowError:
            self._pending.pop(request_id, None)
            os.close(stdin_w)
            raise TemplateUnavailable("the runner template did not answer") from None
        except BaseException:
            # Cancelled while the template forks: EOF makes that runner exit.
            os.close(stdin_w)
            raise
        if "pid" not in reply:
            os.close(stdin_w)
            raise TemplateUnavailable(f"the runner template could not fork: {reply.get('error')}")
        runner = ForkedRunner(int(reply["pid"]), trio.lowlevel.FdStream(stdin_w))
        early = self._early_exits.pop(runner.pid, None)
        if early is not None:
            runner._set_exited(early)
        else:
            self._runners[runner.pid] = runner
        if rest:
            await _send_rest(runner, rest)
        return runner


def _write_what_fits(fd: int, data: bytes) -> bytes:
    """Write what the empty pipe ``fd`` takes without blocking; the rest."""
    os.set_blocking(fd, False)
    try:
        written = os.write(fd, data)
    except BlockingIOError:
        written = 0
    return data[written:]


async def _send_rest(runner: ForkedRunner, rest: bytes) -> None:
    """The rest of a spec, for a runner that died at once to explain by its exit."""
    assert runner.stdin is not None
    try:
        await runner.stdin.send_all(rest)
    except trio.BrokenResourceError:
        pass


def _fds(*fds: int) -> bytes:
    import array

    return array.array("i", fds).tobytes()


def _watch_orphan(runner: ForkedRunner) -> None:
    """Mark ``runner`` exited once its process is gone (its exit status is
    lost with its parent, the template)."""
    try:
        pidfd = os.pidfd_open(runner.pid)
    except (ProcessLookupError, OSError):
        runner._set_exited(-9)
        return

    async def watch() -> None:
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)
        runner._set_exited(-9)

    trio.lowlevel.spawn_system_task(watch)
