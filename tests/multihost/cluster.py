"""Simulated hosts for tests of several machines on one PostgreSQL board.

A :class:`Host` is one ``crewboard supervisor`` or ``crewboard web`` in
namespaces of its own (``unshare --uts --pid --mount``, which needs root):
its own hostname (two hosts may be given the same one, as two machines
sometimes are), its own process ids (its first process is pid 1, so two
hosts' crewboard processes often have the same pid) and its own data home,
a folder of the test bound over the one path every host uses as its home.
A file path one host writes on the board therefore names that host's file
everywhere, as on real machines; a host that reads it finds its own file at
that path, or none. The network is shared: every host reaches PostgreSQL
and the web nodes on 127.0.0.1.

The test sees each host from outside: its output (the process's log lines),
its data folder (its run logs), and its crewboard process, which it may kill
(``kill -9``: the host stays up, its orphaned runners with it), freeze
(SIGSTOP) and thaw. Leaving a :class:`Cluster` takes every host down.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import need
from tests.support.procs import Proc, child_processes
from tests.support.waits import wait_until

HOST_INIT = Path(__file__).with_name("host_init.py")
REPO = Path(__file__).resolve().parents[2]


def need_namespaces() -> None:
    """Skip (or, under CREWBOARD_TEST_REQUIRE_ALL=1, fail) where hosts cannot
    be simulated: they need root and util-linux's ``unshare``."""
    need(shutil.which("unshare"), "needs util-linux's unshare to simulate hosts")
    need(os.geteuid() == 0, "needs root to give each simulated host its own namespaces")


@dataclass
class Host:
    """One simulated machine running one crewboard process."""

    name: str
    hostname: str
    data: Path
    proc: Proc

    def output(self) -> str:
        return self.proc.output()

    def wait_for_line(self, text: str, timeout_s: float = 60) -> str:
        """The first output line holding ``text`` (its process's log)."""
        return self.proc.wait_for_line(lambda line: text in line, timeout_s)

    @property
    def crewboard_pid(self) -> int:
        """The crewboard process's pid as the test's machine sees it: the
        child of the host's first process, itself the child of ``unshare``."""

        def find() -> int | None:
            for init, _, _ in child_processes(self.proc.popen.pid):
                for pid, _, cmdline in child_processes(init):
                    if b"crewboard" in cmdline:
                        return pid
            return None

        return wait_until(find, 30, f"the crewboard process of host {self.name}")

    def kill(self) -> None:
        """``kill -9`` the crewboard process; the host, and what that process
        started, stay up."""
        os.kill(self.crewboard_pid, signal.SIGKILL)

    def freeze(self) -> None:
        os.kill(self.crewboard_pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.crewboard_pid, signal.SIGCONT)

    def run_log(self, run_id: int) -> Path:
        """Where this host keeps run ``run_id``'s log, if it ran it."""
        return self.data / "logs" / "runs" / f"{run_id}.jsonl"


@dataclass
class Cluster:
    """Hosts started into one shared home path, each with its own data."""

    root: Path
    env: Mapping[str, str]
    hosts: list[Host] = field(default_factory=list)
    _stack: ExitStack = field(default_factory=ExitStack)

    @property
    def home(self) -> Path:
        """The data home's path on every host."""
        return self.root / "home"

    def start(
        self, name: str, hostname: str, *command: str, env: Mapping[str, str] | None = None
    ) -> Host:
        """Start ``crewboard COMMAND --home HOME`` on a new host ``name``
        named ``hostname``; returns at once (wait for its log line)."""
        data = self.root / "hosts" / name
        data.mkdir(parents=True)
        argv = [
            "unshare", "--uts", "--pid", "--mount", "--fork", "--mount-proc", "--kill-child",
            sys.executable, str(HOST_INIT), hostname, str(data), str(self.home), "--",
            sys.executable, "-m", "crewboard", *command, "--home", str(self.home),
        ]  # fmt: skip
        proc = self._stack.enter_context(Proc(argv, {**self.env, **(env or {})}, cwd=REPO))
        host = Host(name, hostname, data, proc)
        self.hosts.append(host)
        return host

    def logs_of_run(self, run_id: int) -> list[tuple[Host, Path]]:
        """Every host that holds a log of run ``run_id``, with its path."""
        return [
            (host, host.run_log(run_id)) for host in self.hosts if host.run_log(run_id).exists()
        ]

    def close(self) -> None:
        """Take every host down: killing ``unshare`` kills each host's first
        process, and with it everything in its pid namespace (SIGKILL ends
        a frozen process too)."""
        self._stack.close()


@contextmanager
def open_cluster(root: Path, env: Mapping[str, str]) -> Iterator[Cluster]:
    """A :class:`Cluster` under ``root`` whose processes get ``env``; every
    host is down when it closes."""
    need_namespaces()
    cluster = Cluster(root, env)
    cluster.home.mkdir(parents=True)
    try:
        yield cluster
    finally:
        cluster.close()
