"""Running crewboard commands as a user would, as real processes, with
deadlines on everything we wait for."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.conftest import TEST_SETTINGS
from tests.support import engine


def child_processes(parent_pid: int) -> list[tuple[int, str, bytes]]:
    """``(pid, state, raw cmdline)`` of each child of ``parent_pid``, from /proc
    (a zombie's cmdline is empty)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent_pid:
            found.append((int(entry.name), state, cmdline))
    return found


def crewboard_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREWBOARD_")}
    env.update(TEST_SETTINGS)
    extra = extra or {}
    board_url = None if "CREWBOARD_DATABASE_URL" in extra else engine.database_url()
    if board_url is not None:
        env["CREWBOARD_DATABASE_URL"] = board_url
    env.update(extra)
    return env


def run_cli(
    *args: str, home: Path, stdin: str = "", env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crewboard", *args, "--home", str(home)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=crewboard_env(env),
    )


class Proc:
    """A long-running process whose output lines we can wait for."""

    def __init__(
        self, argv: list[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=crewboard_env(env),
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for_line(self, predicate: Callable[[str], bool], timeout_s: float = 60) -> str:
        deadline = time.monotonic() + timeout_s
        for line in self.lines:
            if predicate(line):
                return line
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no such line in time; output:\n" + self.output())
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("process ended first; output:\n" + self.output())
            self.lines.append(line)
            if predicate(line):
                return line

    def output(self) -> str:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return "\n".join(self.lines)

    def wait_exit(self, timeout_s: float = 30) -> int:
        """Wait for the process to exit and its output to end, so that
        :meth:`output` holds every line it printed; returns its exit code."""
        code = self.popen.wait(timeout_s)
        self._pump_thread.join(timeout_s)
        return code

    def stop(self, timeout_s: float = 10) -> int:
        if self.popen.poll() is None:
            self.popen.terminate()
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        self._pump_thread.join(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def serve(home: Path, env: Mapping[str, str] | None = None) -> Proc:
    return Proc(
        [sys.executable, "-m", "crewboard", "serve", "--home", str(home), "--port", "0"], env
    )


def served_url(proc: Proc) -> str:
    """Wait for `crewboard serve` to say where it runs; returns that URL.
    Its start imports and probes in three processes: on a busy two-core
    machine that alone can take twenty seconds."""
    line = proc.wait_for_line(lambda text: "running at" in text, timeout_s=60)
    return line.split("running at ", 1)[1].split()[0]


def gone(pid: int) -> bool:
    """The process has exited (a zombie nobody has reaped yet counts)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        # Gone before the open, or reaped between the open and the read.
        return True


def inotify_instances() -> int:
    """The inotify instances this process holds (a user may hold only 128,
    across all their processes)."""
    fds = os.listdir("/proc/self/fd")
    return sum(1 for fd in fds if _link(f"/proc/self/fd/{fd}") == "anon_inode:inotify")


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""
