"""Running a real supervisor for tests: in the test's own trio nursery, or as
a ``crewboard supervisor`` process where process death matters; and waiting
for the board to show something, with a deadline."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import trio

from crewboard.board import db
from crewboard.config import Config
from crewboard.supervisor.heartbeat import Identity
from crewboard.supervisor.main import run_supervisor
from tests.support import waits
from tests.support.procs import Proc, child_processes

T = TypeVar("T")


@asynccontextmanager
async def supervising(config: Config, *, forkserver: bool = True) -> AsyncIterator[Identity]:
    """A supervisor running in this trio run for the block; stopped (and
    drained) on the way out, within a deadline."""
    stop = trio.Event()
    stopped = trio.Event()

    async def run(task_status: trio.TaskStatus[Identity]) -> None:
        try:
            await run_supervisor(config, stop=stop, forkserver=forkserver, task_status=task_status)
        finally:
            stopped.set()

    async with trio.open_nursery() as nursery:
        identity = await nursery.start(run)
        try:
            yield identity
        finally:
            stop.set()
            # A stop must drain and return, never hang a test; the margin
            # only has to tell a hang from a slow machine.
            with trio.fail_after(config.drain_s + config.grace_s + 30):
                await stopped.wait()


async def wait_for(
    probe: Callable[[], T],
    timeout_s: float = 15,
    what: str = "the condition",
    every_s: float = waits.POLL_S,
) -> T:
    """Run ``probe`` (a board read, on a worker thread) until it returns a
    truthy value; fail after ``timeout_s``."""
    return await waits.wait_for(lambda: db.call(probe), timeout_s, what, every_s)


def supervisor_process(home: Path, env: Mapping[str, str] | None = None) -> Proc:
    """``crewboard supervisor --home HOME`` with the test settings."""
    return Proc([sys.executable, "-m", "crewboard", "supervisor", "--home", str(home)], env)


def children_running(parent_pid: int, module: str) -> list[int]:
    """Pids of ``parent_pid``'s children running ``python -m module``."""
    return [
        pid
        for pid, state, cmdline in child_processes(parent_pid)
        if state != "Z" and module.encode() in cmdline.split(b"\0")
    ]


def started(proc: Proc) -> None:
    """Wait for a supervisor process to say it is ready."""
    proc.wait_for_line(lambda line: "ready" in line and "supervisor" in line)
