"""Launching, stopping and reaping runner subprocesses. Neutral ground shared by
the supervisor (job runs) and the web process (chat turns), so both stop a
runner the same way: SIGTERM to its process group, a grace period, SIGKILL,
then a reap inside a shielded scope.

Every runner is ``sys.executable -m crewboard.runner`` in a new session (its own
process group), with a scrubbed environment. Its JSON spec is the first line of
its stdin; stdin then stays open, and its EOF tells the runner its parent died.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

# Only these survive into a runner's environment: secrets travel in the spec on
# stdin, never in an environment that /proc/<pid>/environ could show.
_ENV_PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH")

DEFAULT_GRACE_S = 5.0


def runner_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a runner starts with: locale and paths, nothing secret
    (no keys, no ``CREWBOARD_*``, no ``NOTIFY_SOCKET``)."""
    env = {k: os.environ[k] for k in _ENV_PASSTHROUGH if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def describe_exit(returncode: int | None) -> str:
    """Say how a process ended, in words a user can act on."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with status {returncode}"


def _signal_group(proc: trio.Process, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone (the group leader may have been reaped)


async def stop_process(proc: trio.Process, grace_s: float = DEFAULT_GRACE_S) -> int:
    """SIGTERM the process group, wait up to ``grace_s``, then SIGKILL it; always
    reaps. Safe to call on a process that already exited. Returns the exit code."""
    with trio.CancelScope(shield=True):
        if proc.returncode is None:
            _signal_group(proc, signal.SIGTERM)
            with trio.move_on_after(grace_s):
                await proc.wait()
        if proc.returncode is None:
            _signal_group(proc, signal.SIGKILL)
        await proc.wait()
        # Tools may have left grandchildren in the group; take them down too.
        _signal_group(proc, signal.SIGKILL)
        return proc.returncode  # type: ignore[return-value]


async def start_runner(
    spec: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    stderr_path: str | os.PathLike[str] | None = None,
) -> trio.Process:
    """Start one runner in its own process group and hand it its spec. The
    caller owns the process: stop it with :func:`stop_process` (which reaps)."""
    stderr: Any = subprocess.DEVNULL
    if stderr_path is not None:
        stderr = open(stderr_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "crewboard.runner"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            env=dict(env) if env is not None else runner_env(),
            close_fds=True,
        )
    finally:
        if stderr_path is not None:
            stderr.close()
    assert proc.stdin is not None
    line = json.dumps(spec, separators=(",", ":")) + "\n"
    try:
        await proc.stdin.send_all(line.encode())
    except trio.BrokenResourceError:
        pass  # it died at once; the reaper will see why
    return proc


@asynccontextmanager
async def open_runner(
    spec: Mapping[str, Any],
    *,
    grace_s: float = DEFAULT_GRACE_S,
    env: Mapping[str, str] | None = None,
    stderr_path: str | os.PathLike[str] | None = None,
) -> AsyncIterator[trio.Process]:
    """Run a runner for the duration of the block. Leaving the block (normally,
    by error or by cancellation) stops it if it still runs and always reaps it."""
    proc = await start_runner(spec, env=env, stderr_path=stderr_path)
    try:
        yield proc
    finally:
        await stop_process(proc, grace_s)
        with trio.CancelScope(shield=True):
            if proc.stdin is not None:
                await proc.stdin.aclose()
