"""Tool ``shell``: run a command with ``/bin/sh`` in the run's workspace.

Off unless the operator sets ``CREWBOARD_ALLOW_SHELL=1`` (``limits.allowShell``).
The command runs inside bubblewrap (see :mod:`.sandbox` for what it can reach)
with a timeout, an output cap, hard resource limits, a scrubbed environment
and its own process group, killed whole on timeout. Without a working
bubblewrap each call is refused with a clear error, unless the operator
allowed an unsandboxed shell (``limits.shellSandbox`` "none").
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from typing import Any

from crewboard.runner.spec import Limits
from crewboard.runner.tools import sandbox
from crewboard.runner.tools.base import (
    Tool,
    ToolContext,
    ToolError,
    arg_number,
    arg_str,
    clip,
    params,
)

DISABLED = (
    "the shell tool is disabled on this server "
    "(the operator enables it with CREWBOARD_ALLOW_SHELL=1)"
)
UNAVAILABLE = "the shell is enabled but its sandbox (bubblewrap) is not available: "


def shell(args: dict[str, Any], ctx: ToolContext) -> str:
    limits = ctx.limits
    if not limits.allow_shell:
        raise ToolError(DISABLED)
    command = arg_str(args, "command")
    timeout_s = min(arg_number(args, "timeout_s", limits.tool_timeout_s), limits.tool_timeout_s)
    ctx.workspace.mkdir(parents=True, exist_ok=True)
    sandboxed = limits.shell_sandbox != "none"
    env = sandbox.tool_env(ctx.workspace, sandboxed=sandboxed)
    if sandboxed:
        wrapper = sandbox.sandbox_argv(_bwrap(limits), ctx.workspace, limits, env)
        script = command
    else:
        wrapper = sandbox.unprivileged_argv()
        script = sandbox.watchdog_prelude(os.getpid()) + command
    rlimits = sandbox.limits_argv(limits, sandboxed=sandboxed)
    if not rlimits:
        raise ToolError("cannot limit the command's resources: prlimit (util-linux) is missing")
    argv = [*wrapper, *rlimits, "/bin/sh", "-c", script]
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=ctx.workspace,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
            close_fds=True,
        )
    except OSError as exc:
        raise ToolError(f"cannot start the shell: {exc}") from exc
    ctx.add_child(proc.pid)
    try:
        output, timed_out = _collect(proc, timeout_s, ctx.limits.tool_output_bytes)
    finally:
        _kill_group(proc.pid)
        proc.wait()
        ctx.discard_child(proc.pid)
        if proc.stdout is not None:
            proc.stdout.close()
    text = output.decode(errors="replace")
    elapsed = time.monotonic() - started
    if timed_out:
        status = f"killed after the {timeout_s:g} s timeout"
    elif proc.returncode < 0:
        status = f"killed by {signal.Signals(-proc.returncode).name}"
    else:
        status = f"exit status {proc.returncode}"
    return clip(f"[{status}, {elapsed:.1f} s]\n{text}", ctx.limits.tool_output_bytes)


def _bwrap(limits: Limits) -> str:
    """The bubblewrap binary to run the command in, or the refusal."""
    try:
        return sandbox.find_bwrap(limits)
    except ToolError as exc:
        raise ToolError(f"the shell is enabled but {exc}") from exc


def _collect(proc: subprocess.Popen[bytes], timeout_s: float, cap: int) -> tuple[bytes, bool]:
    """Read the output until EOF or the timeout, keeping the first ``cap`` bytes
    and draining the rest so the command never blocks on a full pipe."""
    assert proc.stdout is not None
    kept = bytearray()
    dropped = 0
    deadline = time.monotonic() + timeout_s
    fd = proc.stdout.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return bytes(kept), True
            if not selector.select(min(left, 0.2)):
                if proc.poll() is not None:
                    break  # it ended; a background child still holding the pipe is not waited for
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            room = cap - len(kept)
            kept += data[:room]
            dropped += max(0, len(data) - room)
    if dropped:
        kept += f"\n[output cut: {dropped} more bytes not shown]".encode()
    return bytes(kept), False


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


TOOL = Tool(
    name="shell",
    description=(
        "Run a shell command (/bin/sh) in your workspace and get its exit status and output "
        "(stdout and stderr together). It runs with a timeout and capped output, in a "
        "sandbox where only the workspace is writable"
        " and, unless the server says otherwise, with no network."
    ),
    parameters=params(
        ["command"],
        command={"type": "string", "description": "The command line to run"},
        timeout_s={"type": "number", "description": "Seconds before it is killed (capped)"},
    ),
    run=shell,
)
