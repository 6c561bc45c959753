"""Runner processes from start to reap. Neutral ground shared by the
supervisor (job runs) and the web process (chat turns): both run a runner
through :func:`run_runner`, so both start, stop and reap it the same way —
SIGTERM to its process group, a grace period, SIGKILL, then a reap inside a
shielded scope.

A runner is forked from a pre-imported template (:mod:`crewboard.forkserver`)
when one runs, else spawned as ``sys.executable -m crewboard.runner``; either
way it is in a new session (its own process group), with a scrubbed
environment. Its spec (:class:`crewboard.runspec.RunnerSpec`) is the first
line of its stdin; stdin then stays open, and its EOF tells the runner its
parent died. Its stderr is held in memory (:class:`StderrBuffer`) and handed to
its owner with its exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import trio

from crewboard.runspec import RunnerSpec, spec_line

log = logging.getLogger(__name__)

# Only these survive into a runner's environment: secrets travel in the spec on
# stdin, never in an environment that /proc/<pid>/environ could show.
_ENV_PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH")

DEFAULT_GRACE_S = 5.0
# What a runner's stderr keeps; what it writes beyond is lost.
STDERR_MAX_BYTES = 8 << 20

# A spec as the launcher and the chat turns build it, or its JSON document as
# is (a test may hand a runner a spec the runner must refuse).
SpecDocument: TypeAlias = RunnerSpec | Mapping[str, Any]


class RunnerProcess(Protocol):
    """A running runner as its owner sees it: a spawned ``trio.Process`` and a
    forked :class:`crewboard.forkserver.ForkedRunner` alike."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def stdin(self) -> trio.abc.SendStream | None: ...

    async def wait(self) -> int: ...


class TemplateUnavailable(Exception):
    """The runner template is not running (it failed to start or died);
    start runners without it."""


class RunnerTemplate(Protocol):
    """Something that forks runners (:class:`crewboard.forkserver.ForkServer`)."""

    @property
    def available(self) -> bool: ...

    async def start_runner(
        self, spec: SpecDocument, *, stderr: int | None = None
    ) -> RunnerProcess: ...


@dataclass(frozen=True)
class RunnerExit:
    """How a runner ended, once reaped."""

    returncode: int
    # It still ran when its wait ended (its scope or its owner was
    # cancelled), so it was stopped: SIGTERM, the grace period, SIGKILL.
    stopped: bool
    # What it wrote to its stderr (a traceback, a crash), up to
    # STDERR_MAX_BYTES; most runners write nothing.
    stderr: bytes = b""


class StderrBuffer:
    """A runner's stderr, held in memory rather than in a file: most runners
    write nothing, and a file made for each run and deleted after it costs
    the disk's inode allocator more than a short run costs itself. A sealed
    ``memfd`` of ``max_bytes`` (sparse: only what is written takes memory);
    writes beyond it fail, so a runaway runner cannot fill the memory. The
    runner's writes move the offset this buffer shares with it, which says
    how much it wrote. An anonymous temporary file where memfd is missing."""

    def __init__(self, max_bytes: int = STDERR_MAX_BYTES) -> None:
        try:
            flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
            self.fd = os.memfd_create("crewboard-runner-stderr", flags)
        except (AttributeError, OSError):
            with tempfile.TemporaryFile() as unnamed:
                self.fd = os.dup(unnamed.fileno())
            return
        os.ftruncate(self.fd, max_bytes)
        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK)

    def fileno(self) -> int:
        return self.fd

    def read(self) -> bytes:
        """What the runner wrote (call after its reap)."""
        try:
            written = os.lseek(self.fd, 0, os.SEEK_CUR)
            return os.pread(self.fd, written, 0) if written else b""
        except OSError:
            return b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    return True


def runner_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a runner starts with: locale and paths, nothing secret
    (no keys, no ``CREWBOARD_*``, no ``NOTIFY_SOCKET``)."""
    env = {k: os.environ[k] for k in _ENV_PASSTHROUGH if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def encode_spec(spec: SpecDocument) -> bytes:
    """The first line of a runner's stdin."""
    return spec.to_line() if isinstance(spec, RunnerSpec) else spec_line(spec)


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


def _signal_group(proc: RunnerProcess, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone (the group leader may have been reaped)


async def stop_process(proc: RunnerProcess, grace_s: float = DEFAULT_GRACE_S) -> int:
    """SIGTERM the process group, wait up to ``grace_s``, then SIGKILL it; always
    reaps. Safe to call on a process that already exited. Returns the exit code.
    With no grace the group is killed at once: a SIGTERM the runner had no
    time to act on would only race the kill to write "cancelled" in its log."""
    with trio.CancelScope(shield=True):
        if proc.returncode is None and grace_s > 0:
            _signal_group(proc, signal.SIGTERM)
            with trio.move_on_after(grace_s):
                await proc.wait()
        if proc.returncode is None:
            _signal_group(proc, signal.SIGKILL)
        code = await proc.wait()
        # Tools may have left grandchildren in the group; take them down too.
        _signal_group(proc, signal.SIGKILL)
    return code


async def spawn_runner(
    spec: SpecDocument,
    *,
    env: Mapping[str, str] | None = None,
    stderr: int | None = None,
) -> trio.Process:
    """Start one runner as a fresh interpreter in its own process group and
    hand it its spec; its stderr goes to the file descriptor ``stderr``
    (default: nowhere). The caller owns the process: stop it with
    :func:`stop_process` (which reaps)."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "crewboard.runner"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if stderr is None else stderr,
        start_new_session=True,
        env=dict(env) if env is not None else runner_env(),
        close_fds=True,
    )
    await send_spec(proc, spec)
    return proc


async def send_spec(proc: RunnerProcess, spec: SpecDocument) -> None:
    """Hand a just-started runner its spec, the first line of its stdin. A
    runner that died at once is left to its exit status to explain."""
    assert proc.stdin is not None
    try:
        await proc.stdin.send_all(encode_spec(spec))
    except trio.BrokenResourceError:
        pass


def tell_lease_renewed(proc: RunnerProcess) -> None:
    """Tell a job runner its run's lease was renewed (``runner/lease.py``)."""
    _tell(proc, b"\n")


def tell_shipped(proc: RunnerProcess, seq: int) -> None:
    """Tell a job runner the board holds its run's records through ``seq``
    (``runner/settle.py``)."""
    _tell(proc, b"%d\n" % seq)


def _tell(proc: RunnerProcess, line: bytes) -> None:
    """A line on a runner's stdin, after its spec (``runner/main.py``), from
    the trio thread. Never blocks (a line is written whole or not at all),
    and a runner whose stdin is closed or full (it reads no more) is left
    to its lease."""
    fileno = getattr(proc.stdin, "fileno", None)
    fd = fileno() if fileno is not None else -1
    if fd >= 0:  # -1 once the stream is closed: the number may be reused
        with contextlib.suppress(OSError):
            os.write(fd, line)


async def start_runner(
    spec: SpecDocument,
    *,
    template: RunnerTemplate | None = None,
    stderr: int | None = None,
) -> RunnerProcess:
    """Start one runner: forked from ``template`` if it runs, else spawned;
    its stderr goes to the file descriptor ``stderr`` (default: nowhere).
    Shielded, so a cancellation arriving mid-start cannot lose the process.
    OSError if it cannot be started."""
    with trio.CancelScope(shield=True):
        proc = await _fork_or_spawn(spec, template, stderr)
    return proc


async def _fork_or_spawn(
    spec: SpecDocument, template: RunnerTemplate | None, stderr: int | None
) -> RunnerProcess:
    if template is not None and template.available:
        try:
            return await template.start_runner(spec, stderr=stderr)
        except TemplateUnavailable as exc:
            log.warning("%s; spawning the runner instead", exc)
    return await spawn_runner(spec, stderr=stderr)


async def run_runner(
    spec: SpecDocument,
    scope: trio.CancelScope,
    *,
    grace_s: float | Callable[[], float],
    started: Callable[[RunnerProcess], Awaitable[None]],
    ended: Callable[[RunnerExit], Awaitable[None]],
    template: RunnerTemplate | None = None,
) -> None:
    """One runner from start to reap, as job runs and chat turns both run it.

    Start it (:func:`start_runner`) and hand it to ``started``; wait for it
    to exit inside ``scope``; then, however the wait ended (the runner
    exited, ``scope`` was cancelled, or the caller was), stop it if it still
    runs (``grace_s`` between SIGTERM and SIGKILL, asked at that moment if a
    callable), reap it, close its stdin, and hand ``ended`` its exit and
    what it wrote to its stderr — all shielded, so the owner's terminal
    record is written even while it is being torn down.

    OSError if it cannot be started; then nothing runs and neither hook is
    called. The hooks handle their own errors."""
    stderr = StderrBuffer()
    try:
        proc = await start_runner(spec, template=template, stderr=stderr.fileno())
    except BaseException:
        stderr.close()
        raise
    try:
        await started(proc)
        with scope:
            await proc.wait()
    finally:
        with trio.CancelScope(shield=True):
            stopped = proc.returncode is None
            # Asked only now: a chat turn's grace depends on why it is stopped.
            grace = (grace_s() if callable(grace_s) else grace_s) if stopped else 0.0
            code = await stop_process(proc, grace)
            if proc.stdin is not None:
                await proc.stdin.aclose()
            written = stderr.read()
            stderr.close()
            await ended(RunnerExit(code, stopped, written))
