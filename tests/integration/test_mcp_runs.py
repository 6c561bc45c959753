"""MCP tool servers driven end to end through job runs: the administrator's
``[mcp.NAME]`` tables and presets are read from a real home, a real
supervisor runs real runners on the offline model, and the model's
``/tool NAME__tool {json}`` directives call real servers — ``mcp-server-time``
from PyPI and the purpose-written probe server, which crashes, hangs,
answers 5 MB and tries to reach outside its sandbox."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crewboard.board.models import JobStatus, RunOutcome
from crewboard.bootstrap import open_home
from crewboard.config import Config
from crewboard.sessionlog import read_records
from tests.conftest import TEST_SETTINGS
from tests.support import crews, waits
from tests.support.mcp import (
    need_mcp,
    probe_command,
    processes_with,
    server_program,
    write_mcp_setup,
)
from tests.support.supervisor import supervising, wait_for

pytestmark = pytest.mark.usefixtures("need_servers")


@pytest.fixture
def need_servers() -> None:
    need_mcp()


@pytest.fixture
def mcp_home(tmp_path: Path) -> Iterator[Any]:
    """Writes the tables and presets, then opens the home; yields the maker."""
    from crewboard.board import db

    def make(
        servers: dict[str, dict[str, Any]],
        presets: dict[str, dict[str, Any]],
        environ: dict[str, str] | None = None,
    ) -> Config:
        home = tmp_path / "home"
        agents = write_mcp_setup(home, servers, presets)
        environ = {**TEST_SETTINGS, "CREWBOARD_AGENTS": str(agents), **(environ or {})}
        config = Config.load(home, environ=environ)
        open_home(config)
        return config

    yield make
    db.close()


def time_server() -> dict[str, Any]:
    return {"command": [server_program("mcp-server-time")]}


async def run_job(config: Config, agent: str, prompt: str) -> tuple[Any, list[dict[str, Any]]]:
    """Run one job to its end; the job and its run's log records."""
    job_id = crews.add_job(prompt, agent=agent)
    async with supervising(config):
        job = await wait_for(
            lambda: (j := crews.job(job_id)).status in (JobStatus.DONE, JobStatus.BLOCKED) and j,
            timeout_s=90,
            what="the job to end",
        )
    (run,) = crews.runs(job_id)
    return job, read_records(run.log_path)


def tool_ends(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == "agent_tool_end"]


async def test_the_time_server_answers_a_job_through_the_same_tool_records(mcp_home) -> None:
    config = mcp_home({"time": time_server()}, {"clock": {"mcp": ["time"]}})
    job, records = await run_job(
        config, "clock", '/tool time__get_current_time {"timezone": "Europe/Paris"}\nWhat time?'
    )
    assert job.status == JobStatus.DONE
    (start,) = [r for r in records if r["type"] == "agent_tool_start"]
    assert start["toolName"] == "time__get_current_time"
    (end,) = tool_ends(records)
    assert "isError" not in end
    answer = json.loads(end["result"])
    assert answer["timezone"] == "Europe/Paris" and answer["datetime"]
    assert "Europe/Paris" in job.result


async def test_a_preset_granted_one_tool_cannot_call_the_others(mcp_home) -> None:
    config = mcp_home(
        {"time": time_server()},
        {"converter": {"mcp": ["time"], "mcp_tools": ["time.convert_time"]}},
    )
    arguments = {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
    job, records = await run_job(
        config,
        "converter",
        "/tool time__get_current_time {}\nthen\n"
        f"/tool time__convert_time {json.dumps(arguments)}",
    )
    refused, converted = tool_ends(records)
    assert refused["isError"] is True
    assert "'time__get_current_time' is not one of your tools" in refused["result"]
    assert "isError" not in converted and "Asia/Tokyo" in converted["result"]
    assert job.status == JobStatus.DONE


async def test_a_server_that_crashes_mid_call_is_an_error_the_model_reads(
    mcp_home, tmp_path: Path
) -> None:
    tag = str(tmp_path)
    config = mcp_home({"probe": {"command": probe_command(tag)}}, {"prober": {"mcp": ["probe"]}})
    job, records = await run_job(
        config, "prober", '/tool probe__crash {}\nthen\n/tool probe__echo {"text": "still there?"}'
    )
    crashed, after = tool_ends(records)
    assert crashed["isError"] is True
    assert "the MCP server 'probe' stopped while answering probe__crash" in crashed["result"]
    assert "crashing on purpose" in crashed["result"]  # its stderr, quoted
    assert after["isError"] is True and "stopped while answering" in after["result"]
    # The run went on and ended; the model was told.
    assert job.status == JobStatus.DONE
    assert "stopped while answering" in job.result


async def test_a_server_that_hangs_times_out_and_dies_with_the_run(
    mcp_home, tmp_path: Path
) -> None:
    tag = str(tmp_path)
    config = mcp_home(
        {"probe": {"command": probe_command(tag), "call_timeout_s": 2}},
        {"prober": {"mcp": ["probe"]}},
    )
    job, records = await run_job(config, "prober", "/tool probe__hang {}")
    (end,) = tool_ends(records)
    assert end["isError"] is True
    assert end["result"] == (
        "error: probe__hang did not answer within 2 s (call_timeout_s); the call was abandoned"
    )
    assert job.status == JobStatus.DONE
    # No process of the server outlives its run.
    await waits.wait_for(lambda: not processes_with(tag), 15, "the server's processes to end")


async def test_a_5_mb_answer_is_cut_to_the_output_cap(mcp_home, tmp_path: Path) -> None:
    config = mcp_home(
        {"probe": {"command": probe_command(str(tmp_path)), "output_bytes": 4096}},
        {"prober": {"mcp": ["probe"]}},
    )
    job, records = await run_job(config, "prober", '/tool probe__big {"megabytes": 5}')
    (end,) = tool_ends(records)
    assert end["result"].endswith(f"[output cut: {5 << 20} bytes, the first 4096 shown]")
    assert len(end["result"]) < 4096 + 100
    (run,) = crews.runs(job.id)
    assert Path(run.log_path).stat().st_size < 64 << 10
    assert job.status == JobStatus.DONE


async def test_an_image_becomes_an_artifact(mcp_home, tmp_path: Path) -> None:
    config = mcp_home(
        {"probe": {"command": probe_command(str(tmp_path))}}, {"prober": {"mcp": ["probe"]}}
    )
    job, records = await run_job(config, "prober", "/tool probe__pixel {}")
    (end,) = tool_ends(records)
    assert end["result"] == "[image (image/png, 69 bytes) saved as the artifact 'probe-pixel.png']"
    (run,) = crews.runs(job.id)
    saved = Path(config.home, "artifacts", str(run.id), "probe-pixel.png").read_bytes()
    assert saved.startswith(b"\x89PNG")
    assert run.outcome == RunOutcome.SUCCEEDED


async def test_a_server_reaches_only_its_workspace_and_named_variables(
    mcp_home, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("the host's file")
    config = mcp_home(
        {"probe": {"command": probe_command(str(tmp_path)), "env": ["PROBE_TOKEN"]}},
        {"prober": {"mcp": ["probe"]}},
        environ={"PROBE_TOKEN": "token-for-the-probe-only", "OTHER_SECRET": "not-for-a-server"},
    )
    home_secret = config.home / "secret_key"
    home_secret.write_text("the data home's secret")
    steps = [
        ("read_path", {"path": str(outside)}),
        ("read_path", {"path": str(home_secret)}),
        ("read_path", {"path": str(config.home / "board.db")}),
        ("write_path", {"path": str(tmp_path / "planted.txt"), "text": "x"}),
        ("write_path", {"path": "notes.txt", "text": "kept in the workspace"}),
        ("read_path", {"path": "/proc/1/environ"}),
        ("environment", {}),
    ]
    prompt = "\nthen\n".join(f"/tool probe__{tool} {json.dumps(args)}" for tool, args in steps)
    job, records = await run_job(config, "prober", prompt)
    results = [r["result"] for r in tool_ends(records)]
    assert results[0].startswith("cannot read: [Errno 2] No such file or directory")
    assert results[1].startswith("cannot read: [Errno 2] No such file or directory")
    assert results[2].startswith("cannot read: [Errno 2] No such file or directory")
    # Outside the workspace a write lands on the sandbox's private /tmp at
    # most, never on the host.
    assert not (tmp_path / "planted.txt").exists()
    assert results[4].startswith("wrote notes.txt")
    (run,) = crews.runs(job.id)
    workspace = Path(config.home, "workspaces", str(run.id))
    assert (workspace / "notes.txt").read_text() == "kept in the workspace"
    # Its own PID namespace: pid 1 is the sandbox's init, whose environment is empty.
    assert "token-for-the-probe-only" not in results[5]
    variables = dict(line.split("=", 1) for line in results[6].splitlines())
    assert "OTHER_SECRET" not in variables
    assert not [name for name in variables if name.startswith("CREWBOARD")]
    # The named variable reached the server; its value never reaches the log.
    assert variables["PROBE_TOKEN"] == "***"
    assert "token-for-the-probe-only" not in Path(run.log_path).read_text()
    assert variables["HOME"] == str(workspace)


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener on the host's loopback; yields its port."""
    sock = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                sock.accept()[0].close()
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


@pytest.mark.parametrize("network", [False, True], ids=["no-network", "network"])
async def test_the_network_is_on_only_when_the_table_says_so(
    mcp_home, tmp_path: Path, listener: int, network: bool
) -> None:
    config = mcp_home(
        {"probe": {"command": probe_command(str(tmp_path)), "network": network}},
        {"prober": {"mcp": ["probe"]}},
    )
    arguments = {"host": "127.0.0.1", "port": listener}
    _, records = await run_job(config, "prober", f"/tool probe__connect {json.dumps(arguments)}")
    (end,) = tool_ends(records)
    if network:
        assert end["result"] == f"connected to 127.0.0.1:{listener}"
    else:
        assert end["result"].startswith("cannot connect:")


async def test_a_server_that_fails_to_start_ends_the_run_with_its_reason(mcp_home) -> None:
    import sys

    failing = [sys.executable, "-c", "import sys; sys.exit('no database configured')"]
    config = mcp_home({"broken": {"command": failing}}, {"user": {"mcp": ["broken"]}})
    job_id = crews.add_job("/tool broken__anything {}", agent="user", retries=0)
    async with supervising(config):
        job = await wait_for(
            lambda: (j := crews.job(job_id)).status == JobStatus.BLOCKED and j, 60, "blocked"
        )
    (run,) = crews.runs(job.id)
    assert run.outcome == RunOutcome.FAILED
    assert "the MCP server 'broken' did not start" in run.error
    assert "no database configured" in run.error


async def test_a_server_that_does_not_start_in_time_is_stopped(mcp_home, tmp_path: Path) -> None:
    import sys

    tag = str(tmp_path)
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)", tag]
    config = mcp_home(
        {"slow": {"command": sleeper, "start_timeout_s": 2}}, {"user": {"mcp": ["slow"]}}
    )
    job_id = crews.add_job("/tool slow__anything {}", agent="user", retries=0)
    async with supervising(config):
        await wait_for(lambda: crews.job(job_id).status == JobStatus.BLOCKED, 60, "blocked")
    (run,) = crews.runs(job_id)
    assert "the MCP server 'slow' did not start within 2 s (start_timeout_s)" in run.error
    await waits.wait_for(lambda: not processes_with(tag), 15, "the server's processes to end")


@pytest.fixture
def http_probe(tmp_path: Path) -> Iterator[str]:
    """The probe server over streamable HTTP on loopback; yields its URL."""
    import subprocess
    import sys

    from tests.support.local_model import free_port
    from tests.support.mcp import PROBE_SERVER

    port = free_port()
    log = (tmp_path / "http-probe.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(PROBE_SERVER), "--http", str(port)], stdout=log, stderr=log
    )

    def accepting() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        waits.wait_until(accepting, 30, "the HTTP probe server to listen")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait()
        log.close()


async def test_an_http_server_at_a_private_address_is_refused_unless_allowed(
    mcp_home, http_probe: str
) -> None:
    config = mcp_home({"remote": {"url": http_probe}}, {"user": {"mcp": ["remote"]}})
    job_id = crews.add_job('/tool remote__echo {"text": "hi"}', agent="user", retries=0)
    async with supervising(config):
        await wait_for(lambda: crews.job(job_id).status == JobStatus.BLOCKED, 60, "blocked")
    (run,) = crews.runs(job_id)
    assert "the MCP server 'remote' did not start: refused: 127.0.0.1" in run.error
    assert "loopback" in run.error and "CREWBOARD_HTTP_ALLOW" in run.error


@pytest.mark.parametrize("how", ["allow-list", "table"])
async def test_an_allowed_http_server_answers(mcp_home, http_probe: str, how: str) -> None:
    table: dict[str, Any] = {"url": http_probe}
    environ = {}
    if how == "allow-list":
        environ["CREWBOARD_HTTP_ALLOW"] = "127.0.0.1"
    else:
        table["allow_private"] = True
    config = mcp_home({"remote": table}, {"user": {"mcp": ["remote"]}}, environ=environ)
    job, records = await run_job(config, "user", '/tool remote__echo {"text": "over http"}')
    (end,) = tool_ends(records)
    assert end["result"] == "over http" and "isError" not in end
    assert job.status == JobStatus.DONE


async def test_a_server_dies_with_a_runner_killed_mid_call(mcp_home, tmp_path: Path) -> None:
    import os
    import signal

    tag = str(tmp_path)
    config = mcp_home(
        {"probe": {"command": probe_command(tag), "call_timeout_s": 600}},
        {"prober": {"mcp": ["probe"]}},
    )
    job_id = crews.add_job("/tool probe__hang {}", agent="prober", retries=0, timeout_s=600)
    async with supervising(config):
        run = await wait_for(
            lambda: next((r for r in crews.runs(job_id) if r.pid), None), 60, "a runner"
        )

        def calling() -> bool:
            return any(r["type"] == "agent_tool_start" for r in read_records(run.log_path))

        await waits.wait_for(calling, 60, "the call to start")
        assert processes_with(tag), "the server runs while its call hangs"
        os.kill(run.pid, signal.SIGKILL)
        await wait_for(lambda: crews.job(job_id).status == JobStatus.BLOCKED, 60, "blocked")
    await waits.wait_for(lambda: not processes_with(tag), 15, "the server's processes to end")


async def test_servers_start_together_and_one_failing_stops_the_others(
    mcp_home, tmp_path: Path
) -> None:
    import sys

    tag = str(tmp_path)
    failing = [sys.executable, "-c", "import sys; sys.exit('missing its config')"]
    config = mcp_home(
        {
            "probe": {"command": probe_command(tag)},
            "time": time_server(),
            "broken": {"command": failing},
        },
        {"both": {"mcp": ["probe", "time"]}, "all": {"mcp": ["probe", "time", "broken"]}},
    )
    arguments = json.dumps({"timezone": "UTC"})
    _, records = await run_job(
        config,
        "both",
        f'/tool probe__echo {{"text": "one"}}\n/tool time__get_current_time {arguments}',
    )
    results = sorted(r["result"] for r in tool_ends(records))
    assert results[0] == "one" and '"timezone": "UTC"' in results[1]
    job_id = crews.add_job("/tool probe__echo {}", agent="all", retries=0)
    async with supervising(config):
        await wait_for(lambda: crews.job(job_id).status == JobStatus.BLOCKED, 60, "blocked")
    (run,) = crews.runs(job_id)
    assert "the MCP server 'broken' did not start" in run.error
    assert "missing its config" in run.error
    await waits.wait_for(lambda: not processes_with(tag), 15, "the probe's processes to end")
