"""Tool shell: off unless allowed; in the workspace with a timeout, an output
cap, hard limits, a scrubbed environment and a process-group kill; inside
bubblewrap where it exists."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crewboard.runner.tools.base import ToolContext, ToolError
from crewboard.runner.tools.shell import DISABLED, TOOL
from tests.support import need
from tests.support.runner import tool_context
from tests.support.waits import wait_until


def shell_context(tmp_path: Path, **limits: object) -> ToolContext:
    return tool_context(tmp_path, allow_shell=True, **{"tool_timeout_s": 10.0, **limits})


def sh(ctx: ToolContext, command: str, **args: object) -> str:
    return TOOL.run({"command": command, **args}, ctx)


def test_it_is_off_unless_the_operator_allows_it(tmp_path: Path) -> None:
    with pytest.raises(ToolError) as caught:
        TOOL.run({"command": "echo hi"}, tool_context(tmp_path))
    assert str(caught.value) == DISABLED


def test_runs_in_the_workspace_and_reports_status_and_both_streams(tmp_path: Path) -> None:
    ctx = shell_context(tmp_path)
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


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    ctx = shell_context(tmp_path)
    with HeldPipe(ctx.workspace) as held:
        out = sh(ctx, f"{HeldPipe.LOOP} & sleep 600", timeout_s=0.5)
        assert "killed after the 0.5 s timeout" in out
        assert held.started(), "the background loop ran"
        wait_until(held.released, 30, "the background loop to die with its group")
    assert ctx.children == set()


def test_a_background_child_does_not_hold_the_call(tmp_path: Path) -> None:
    # Were the call held until the child ends, the tool's own 10 s timeout
    # would cut it and say so.
    out = sh(shell_context(tmp_path), "sleep 600 & echo quick")
    assert out.startswith("[exit status 0,") and "quick" in out


def test_output_is_capped_and_drained(tmp_path: Path) -> None:
    ctx = shell_context(tmp_path, tool_output_bytes=1000)
    out = sh(ctx, "head -c 300000 /dev/zero | tr '\\0' x; echo; echo end")
    assert len(out.encode()) < 1200
    assert "output cut" in out


def test_the_environment_is_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("CREWBOARD_ADMIN_PASSWORD", "hunter2")
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    ctx = shell_context(tmp_path)
    out = sh(ctx, "env")
    for leaked in ("sk-should-not-leak", "hunter2", "NOTIFY_SOCKET", "CREWBOARD_"):
        assert leaked not in out
    assert f"HOME={ctx.workspace}" in out


def test_hard_resource_limits_apply(tmp_path: Path) -> None:
    out = sh(
        shell_context(tmp_path, tool_timeout_s=7.0), "ulimit -t; ulimit -c; ulimit -n; ulimit -H -v"
    )
    assert out.split("\n", 1)[1].split() == ["12", "0", "1024", "8388608"]


def test_inside_bubblewrap_only_the_workspace_is_there_and_writable(tmp_path: Path) -> None:
    need(shutil.which("bwrap"), "bubblewrap (bwrap) is not installed")
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
        "touch ok.txt && echo wrote-workspace; "
        "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; "
        "grep CapEff /proc/self/status",
    )
    assert "rows" not in out and "private" not in out and "key\n" not in out
    assert "wrote-usr" not in out and "wrote-workspace" in out
    assert (ctx.workspace / "ok.txt").exists()
    interfaces = [line for line in out.splitlines() if line and ":" not in line and " " not in line]
    assert "lo" in interfaces and "eth0" not in interfaces, "no network but loopback"
    assert "CapEff:\t0000000000000000" in out
    assert not os.path.exists("/usr/evil")


# A stand-in runner: runs the shell tool without bubblewrap, then is killed -9.
_RUNNER = """
import sys
from pathlib import Path
from crewboard.runner.spec import Limits
from crewboard.runner.tools import sandbox, shell
from crewboard.runner.tools.base import ToolContext
sandbox.sandbox_argv = lambda *a: []
ws = Path(sys.argv[1])
ctx = ToolContext(ws, ws.parent / "artifacts", Limits(allow_shell=True, tool_timeout_s=60.0))
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
