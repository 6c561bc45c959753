"""`crewboard serve` with CREWBOARD_LOCAL_MODEL set, as an operator runs it:
the model server is a third supervised child on its loopback port, restarted
when it dies and stopped with the rest; a local model that cannot run stops
the start with the fix."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import pytest

from tests.support.local_model import free_port, need_local_model
from tests.support.procs import gone, run_cli, serve, served_url
from tests.support.waits import wait_until

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board


def _model_child(serve_pid: int) -> int | None:
    out = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(serve_pid)], capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        pid, args = line.strip().split(" ", 1)
        if "crewboard local-model serve" in args:
            return int(pid)
    return None


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_supervises_the_local_model_and_stops_it(tmp_path):
    need_local_model()
    port = free_port()
    env = {"CREWBOARD_LOCAL_MODEL": "smollm2", "CREWBOARD_LOCAL_MODEL_PORT": str(port)}
    with serve(tmp_path / "home", env) as proc:
        served_url(proc)
        first = wait_until(lambda: _model_child(proc.popen.pid), what="the model server child")
        wait_until(lambda: _healthy(port), timeout_s=60, what="the model server to answer")
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["smollm2"]

        os.kill(first, signal.SIGKILL)
        proc.wait_for_line(lambda line: "local model killed by SIGKILL" in line)
        second = wait_until(
            lambda: (pid := _model_child(proc.popen.pid)) not in (None, first) and pid,
            timeout_s=15,
            what="a new model server",
        )
        wait_until(lambda: _healthy(port), timeout_s=60, what="the new model server to answer")

        started = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(10) == 0
        assert time.monotonic() - started < 5
        wait_until(lambda: not _healthy(port), timeout_s=5, what="the model server to stop")
        assert gone(second)


def test_serve_refuses_a_local_model_it_cannot_run(tmp_path):
    env = {"CREWBOARD_LOCAL_MODEL": str(tmp_path / "missing.gguf")}
    result = run_cli("serve", "--port", "0", home=tmp_path / "home", env=env)
    assert result.returncode == 1
    assert "missing.gguf" in result.stderr or "not installed" in result.stderr, result.stderr
