"""The runner template: a process that has already imported the runner and
forks a fresh runner for each run or chat turn, so a runner starts in a few
milliseconds of ``fork`` instead of a new interpreter's start-up (a forked
child of a pre-imported template counts as its own process).

``python -m crewboard.runner.template FD`` is started by its owner's
:class:`~crewboard.forkserver.ForkServer` (the supervisor's, or the web
process's) with a scrubbed environment, a SOCK_SEQPACKET socket on file
descriptor FD, and a pipe on stdin whose EOF means the owner died (the
template then exits). It never sees a run's spec: each request carries only
the runner's stdin (the read end of a pipe the owner writes the spec into)
and stderr, as passed file descriptors. The only specs it reads are its own
warm-up's (:func:`_warm_up`), offline no-op jobs run once at start.

Protocol, one JSON object per packet:

- template → owner: ``{"ready": true}`` once imported;
- owner → template: ``{"id": N}`` with two fds (stdin, stderr);
- template → owner: ``{"id": N, "pid": P}`` once forked, or
  ``{"id": N, "error": "..."}``;
- template → owner: ``{"exited": P, "status": S}`` when child P ends
  (``S`` as ``subprocess`` reports it: the exit code, or minus the signal).

This module imports nothing from the supervisor, the web, the board or trio:
the template, and every runner forked from it, carries only the runner's code.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
from typing import NoReturn

from crewboard.nodump import make_non_dumpable

# The runner's modules, imported once here instead of once per run.
PRELOAD = (
    "crewboard.runner.main",
    "crewboard.runner.settle",
    "crewboard.runner.loop",
    "crewboard.runner.stream",
    "crewboard.runner.providers",
    "crewboard.runner.providers.offline",
    "crewboard.runner.providers.openai",
    "crewboard.runner.tools",
    "crewboard.runner.tools.base",
    "crewboard.runner.tools.block",
    "crewboard.runner.tools.list_files",
    "crewboard.runner.tools.read_file",
    "crewboard.runner.tools.save_artifact",
    "crewboard.runner.tools.write_file",
    "crewboard.runner.tools.http_get",
    "crewboard.runner.tools.shell",
    "crewboard.runner.tools.workspace",
)
_MAX_PACKET = 65536


# Modules no runner uses that a preloaded one would drag in: httpx imports its
# command-line client (rich, click, pygments: a fifth of the template's
# memory) whenever they are installed, and an entry of None in sys.modules
# makes that import fail, which httpx expects. Every page the template holds
# is a page each fork copies the mapping of and each runner's exit unmaps.
NOT_PRELOADED = ("httpx._main",)


def _preload() -> None:
    for name in NOT_PRELOADED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # a runner imports what it needs itself; preloading only saves time


def _send(sock: socket.socket, message: dict) -> None:
    sock.send(json.dumps(message).encode())


def _run_child(stdin_fd: int, stderr_fd: int) -> NoReturn:
    """In the forked child: become a runner in a process group of its own."""
    try:
        # The template does the same from its side, so the group is the
        # runner's before either goes on (the idiom shells use): the owner,
        # told the pid at once, may signal the group from then on.
        os.setpgid(0, 0)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(stdin_fd, 0)
        os.dup2(devnull, 1)
        os.dup2(stderr_fd, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        from crewboard.runner.main import main

        main()
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(70)


def _fork(sock: socket.socket, request: dict, fds: list[int]) -> None:
    try:
        if len(fds) != 2:
            _send(sock, {"id": request.get("id"), "error": "expected stdin and stderr fds"})
            return
        pid = os.fork()
        if pid == 0:
            _run_child(fds[0], fds[1])
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.setpgid(pid, pid)  # see _run_child
        _send(sock, {"id": request.get("id"), "pid": pid})
    except OSError as exc:
        _send(sock, {"id": request.get("id"), "error": str(exc)})
    finally:
        for fd in fds:
            os.close(fd)


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"exited": pid, "status": os.waitstatus_to_exitcode(wait_status)})


def serve(sock: socket.socket) -> None:
    """Fork runners on request until the owner goes away."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    # Stopping is the owner's business (it closes our stdin): a Ctrl-C
    # or a SIGTERM meant for the owner must not take the template first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "request")
    selector.register(0, selectors.EVENT_READ, "stdin")
    selector.register(wake_r, selectors.EVENT_READ, "signal")
    _send(sock, {"ready": True})
    while True:
        for key, _ in selector.select():
            if key.data == "signal":
                os.read(wake_r, 512)
                _reap(sock)
            elif key.data == "stdin":
                if not os.read(0, 512):
                    return
            else:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_PACKET, 4)
                except ConnectionError:
                    return
                if not data:
                    return
                _fork(sock, json.loads(data), fds)
        _reap(sock)


# Offline jobs the template runs itself before it forks any runner (see
# _warm_up): CPython 3.11 specializes a function's bytecode after 8 calls.
WARM_UP_RUNS = 16


def _warm_up() -> None:
    """Run a few no-op jobs on the offline model here, in the template, the
    way a runner does (its spec through JSON, its log, its agent loop).
    CPython rewrites a function's bytecode in place once it has run a few
    times; done here, every forked runner starts with that code already
    rewritten, instead of copying the pages it lives on in each run (about a
    tenth of a short runner's page faults and CPU). Nothing of it outlives
    this call but the rewritten code; a failure only skips it."""
    import tempfile
    from pathlib import Path

    from crewboard.runner.loop import AgentLoop
    from crewboard.runner.providers import open_transport
    from crewboard.runner.session_log import RunLog
    from crewboard.runner.spec import parse_spec
    from crewboard.runner.tools.base import ToolContext
    from crewboard.runspec import AgentDef, ModelDef, RunnerSpec

    model = ModelDef(spec="offline:scripted", provider="offline", name="scripted")
    agent = AgentDef(id="assistant", name="Assistant", instructions="Answer.")
    try:
        with tempfile.TemporaryDirectory(prefix="crewboard-warm-up-") as scratch:
            root = Path(scratch)
            for n in range(WARM_UP_RUNS):
                document = RunnerSpec(
                    run_id=f"warm-up-{n}",
                    agent_id=agent.id,
                    agents={agent.id: agent},
                    model=model,
                    prompt="Warm up.",
                    log_path=root / f"{n}.jsonl",
                    workspace=root / "workspace",
                    artifact_dir=root / "artifacts",
                ).to_line()
                spec = parse_spec(json.loads(document))
                log = RunLog(spec.log_path)
                try:
                    log.append("user_message", text=spec.prompt)
                    context = ToolContext(spec.workspace, spec.artifact_dir, spec.limits)
                    AgentLoop(spec, log, open_transport(spec.model), context).run()
                finally:
                    log.close()
    except Exception:
        pass  # only a little slower runners


def _freeze_heap() -> None:
    """Move everything imported so far out of the collector's sight: a
    forked runner's garbage collections then never walk (and so never copy,
    page by page) the template's modules, which a child touching them would
    otherwise pay for on every run."""
    gc.collect()
    gc.freeze()


def main() -> None:
    _preload()
    _warm_up()
    # Its runners inherit the flag (see nodump.py).
    make_non_dumpable()
    _freeze_heap()
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        serve(sock)
    except (BrokenPipeError, ConnectionError):
        pass  # the owner went away


if __name__ == "__main__":
    main()
