"""Tool shell: off unless allowed; in the workspace with a timeout, an output
cap, hard limits, a scrubbed environment and a process-group kill; inside
bubblewrap, and refused without it unless the operator allowed an unsandboxed
shell. The behaviour every command has is checked both ways."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crewboard.runner.tools.base import ToolContext, ToolError
from crewboard.runner.tools.shell import DISABLED, TOOL, UNAVAILABLE
from tests.support import need
from tests.support.runner import tool_context
from tests.support.waits import wait_until

HAS_BWRAP = shutil.which("bwrap") is not None


@pytest.fixture(params=["bwrap", "none"])
def sandbox(request: pytest.FixtureRequest) -> str:
    """Each behaviour in bubblewrap and, as an operator may allow, without."""
    if request.param == "bwrap":
        need(HAS_BWRAP, "bubblewrap (bwrap) is not installed")
    return str(request.param)


def shell_context(tmp_path: Path, sandbox: str = "bwrap", **limits: object) -> ToolContext:
    if sandbox == "bwrap":
        need(HAS_BWRAP, "bubblewrap (bwrap) is not installed")
    return tool_context(
        tmp_path, allow_shell=True, shell_sandbox=sandbox, **{"tool_timeout_s": 10.0, **limits}
    )


def sh(ctx: ToolContext, command: str, **args: object) -> str:
    return TOOL.run({"command": command, **args}, ctx)


def test_it_is_off_unless_the_operator_allows_it(tmp_path: Path) -> None:
    with pytest.raises(ToolError) as caught:
        TOOL.run({"command": "echo hi"}, tool_context(tmp_path))
    assert str(caught.value) == DISABLED


def test_runs_in_the_workspace_and_reports_status_and_both_streams(
    tmp_path: Path, sandbox: str
) -> None:
    ctx = shell_context(tmp_path, sandbox)
    out = sh(ctx, "pwd; echo made > made.txt; echo oops >&2; exit 3")
    assert out.startswith("[exit status 3,")
    assert str(ctx.workspace.resolve()) in out and "oops" in out
    assert (ctx.workspace / "made.txt").read_text() == "made\n"


class HeldPipe:
    """A FIFO that a command's background loop holds open (``exec 3>held``)
    after writing ``up`` to it. It reads as ended only once every process
    holding it is gone: a sign, seen without waiting on the clock, that a
    whole process group died."""

    LOOP = "(exec 3>held; echo up >&3; while true; do sleep 0.05; done)"

    def __init__(self, folder: Path) -> None:
        os.mkfifo(folder / "held")
        # Non-blocking, so opening does not wait for a writer.
        self._fd = os.open(folder / "held", os.O_RDONLY | os.O_NONBLOCK)
        self._data = b""
        self._ended = False

    def _read(self) -> None:
        try:
            chunk = os.read(self._fd, 4096)
        except BlockingIOError:
            return  # held open, nothing new
        if chunk:
            self._data += chunk
        elif self._data:
            self._ended = True  # its holders wrote, then all went away

    def started(self) -> bool:
        self._read()
        return b"up" in self._data

    def released(self) -> bool:
        self._read()
        return self._ended

    def __enter__(self) -> HeldPipe:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path, sandbox: str) -> None:
    ctx = shell_context(tmp_path, sandbox)
    with HeldPipe(ctx.workspace) as held:
        out = sh(ctx, f"{HeldPipe.LOOP} & sleep 600", timeout_s=0.5)
        assert "killed after the 0.5 s timeout" in out
        assert held.started(), "the background loop ran"
        wait_until(held.released, 30, "the background loop to die with its group")
    assert ctx.children == set()


def test_a_background_child_does_not_hold_the_call(tmp_path: Path, sandbox: str) -> None:
    # Were the call held until the child ends, the tool's own 10 s timeout
    # would cut it and say so.
    out = sh(shell_context(tmp_path, sandbox), "sleep 600 & echo quick")
    assert out.startswith("[exit status 0,") and "quick" in out


def test_output_is_capped_and_drained(tmp_path: Path, sandbox: str) -> None:
    ctx = shell_context(tmp_path, sandbox, tool_output_bytes=1000)
    out = sh(ctx, "head -c 300000 /dev/zero | tr '\\0' x; echo; echo end")
    assert len(out.encode()) < 1200
    assert "output cut" in out


def test_the_environment_is_scrubbed(
    tmp_path: Path, sandbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("CREWBOARD_ADMIN_PASSWORD", "hunter2")
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    ctx = shell_context(tmp_path, sandbox)
    out = sh(ctx, "env")
    for leaked in ("sk-should-not-leak", "hunter2", "NOTIFY_SOCKET", "CREWBOARD_"):
        assert leaked not in out
    assert f"HOME={ctx.workspace}" in out


def test_hard_resource_limits_apply(tmp_path: Path, sandbox: str) -> None:
    ctx = shell_context(
        tmp_path,
        sandbox,
        shell_cpu_s=12,
        shell_memory_bytes=3 << 30,
        shell_file_bytes=5 << 20,
        shell_open_files=200,
        shell_processes=50,
    )
    out = sh(
        ctx, "ulimit -H -t; ulimit -c; ulimit -n; ulimit -H -v; ulimit -H -f; prlimit -u -o HARD"
    )
    values = out.split("\n", 1)[1].split()
    # dash counts file sizes in 512-byte blocks and memory in KiB
    assert values[:5] == ["12", "0", "200", str(3 << 20), str(10 << 10)]
    # The process count is limited inside the sandbox only (outside it would
    # count every process of the server's user).
    assert (values[-1] == "50") == (sandbox == "bwrap")


def test_a_fork_bomb_stops_at_the_process_limit(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("Linux exempts root from the process limit")
    ctx = shell_context(tmp_path, shell_processes=40)
    out = sh(ctx, "for i in $(seq 100); do sleep 2 & done 2>/dev/null; ls /proc | grep -c '^[0-9]'")
    assert int(out.split()[-1]) <= 40


def test_inside_bubblewrap_only_the_workspace_is_there_and_writable(tmp_path: Path) -> None:
    ctx = shell_context(tmp_path)
    (tmp_path / "board.db").write_text("rows")
    (tmp_path / "secret_key").write_text("key")
    other = tmp_path / "workspaces" / "2"
    other.mkdir()
    (other / "theirs.txt").write_text("private")
    out = sh(
        ctx,
        f"cat {tmp_path}/board.db {tmp_path}/secret_key {other}/theirs.txt; "
        "touch /usr/evil 2>&1 && echo wrote-usr; "
        "touch /planted 2>&1 && echo wrote-root; "
        "touch ok.txt && echo wrote-workspace; "
        "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; "
        "grep CapEff /proc/self/status",
    )
    assert "rows" not in out and "private" not in out and "key\n" not in out
    assert "wrote-usr" not in out and "wrote-root" not in out and "wrote-workspace" in out
    assert (ctx.workspace / "ok.txt").exists()
    interfaces = [line for line in out.splitlines() if line and ":" not in line and " " not in line]
    assert "lo" in interfaces and "eth0" not in interfaces, "no network but loopback"
    assert "CapEff:\t0000000000000000" in out
    assert not os.path.exists("/usr/evil")


def test_inside_bubblewrap_etc_holds_named_files_only(tmp_path: Path) -> None:
    out = sh(shell_context(tmp_path), "ls -A /etc; echo --; ls -A /; echo --; ls -A /tmp")
    etc, root, tmp = out.split("\n", 1)[1].split("--\n")
    assert "passwd" in etc.split() and "ld.so.cache" in etc.split()
    for absent in ("resolv.conf", "hosts", "shadow", "crewboard", "environment"):
        assert absent not in etc.split()
    assert set(root.split()) <= {
        "bin",
        "sbin",
        "lib",
        "lib32",
        "lib64",
        "libx32",
        "usr",
        "etc",
        "dev",
        "proc",
        "tmp",
        tmp_path.parts[1],
    }
    # A private /tmp: nothing of the host's, only the way to a workspace below it.
    way_in = {tmp_path.parts[2]} if tmp_path.parts[1] == "tmp" else set()
    assert set(tmp.split()) <= way_in


def test_inside_bubblewrap_no_other_process_is_visible(tmp_path: Path) -> None:
    out = sh(shell_context(tmp_path), f"ls /proc/{os.getpid()} 2>&1; ls /proc | grep -c '^[0-9]'")
    assert "No such file" in out
    assert int(out.split()[-1]) < 10


def test_with_the_network_on_names_resolve(tmp_path: Path) -> None:
    out = sh(shell_context(tmp_path, shell_network=True), "ls /etc; ls /sys/class/net 2>&1")
    assert "resolv.conf" in out and "hosts" in out


def test_without_bubblewrap_each_call_says_why(tmp_path: Path) -> None:
    missing = tool_context(
        tmp_path / "a", allow_shell=True, shell_bwrap=str(tmp_path / "no-such-bwrap")
    )
    with pytest.raises(ToolError) as caught:
        sh(missing, "echo hi")
    assert str(caught.value).startswith(UNAVAILABLE)
    told = tool_context(
        tmp_path / "b", allow_shell=True, shell_unavailable="no user namespaces here"
    )
    with pytest.raises(ToolError, match="not available: no user namespaces here"):
        sh(told, "echo hi")


# A stand-in runner: runs the shell tool without bubblewrap, then is killed -9.
_RUNNER = """
import sys
from pathlib import Path
from crewboard.runner.spec import Limits
from crewboard.runner.tools import shell
from crewboard.runner.tools.base import ToolContext
ws = Path(sys.argv[1])
limits = Limits(allow_shell=True, shell_sandbox="none", tool_timeout_s=60.0)
ctx = ToolContext(ws, ws.parent / "artifacts", limits)
shell.TOOL.run({"command": sys.argv[2] + " & sleep 600"}, ctx)
"""


def test_without_bubblewrap_tool_processes_die_with_a_killed_runner(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with HeldPipe(workspace) as held:
        runner = subprocess.Popen([sys.executable, "-c", _RUNNER, str(workspace), HeldPipe.LOOP])
        try:
            wait_until(held.started, 30, "the tool's loop to start")
        finally:
            runner.kill()
            runner.wait()
        wait_until(held.released, 30, "the tool's loop to die with its runner")
