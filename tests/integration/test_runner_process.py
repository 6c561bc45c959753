"""Real runner subprocesses on the offline model (and on a fake OpenAI server
on loopback), launched the way the supervisor and the web process launch them:
exit codes, terminal records, signals, a vanished parent, and a killed runner
whose log the reaper closes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from crewboard.forkserver import ForkServer
from crewboard.processes import (
    RunnerExit,
    RunnerProcess,
    StderrBuffer,
    run_runner,
    runner_env,
    spawn_runner,
    stop_process,
    tell_lease_renewed,
)
from crewboard.runspec import LEASE_LAPSED_EXIT
from crewboard.sessionlog import ensure_terminal, is_terminal, read_records
from tests.support.fake_openai import Reply, fake_openai
from tests.support.runner import offline_spec
from tests.support.waits import wait_for


async def wait_for_record(path: Path, type_: str, timeout_s: float = 30) -> dict[str, Any]:
    """The log's first record of type ``type_``, once it is written."""

    def first() -> dict[str, Any] | None:
        return next((r for r in read_records(path) if r["type"] == type_), None)

    return await wait_for(first, timeout_s, f"a {type_} record")


async def run_to_end(
    spec: dict[str, Any], tmp_path: Path, timeout_s: float = 15.0
) -> tuple[int, list[dict[str, Any]]]:
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "ab") as stderr_file:
        proc = await spawn_runner(spec, stderr=stderr_file.fileno())
    try:
        with trio.fail_after(timeout_s):
            code = await proc.wait()
    finally:
        await stop_process(proc, 1.0)
        assert proc.stdin is not None
        await proc.stdin.aclose()
    records = read_records(spec["logPath"])
    assert records, f"no log; stderr:\n{stderr.read_text() if stderr.exists() else ''}"
    return code, records


def kinds(records: list[dict[str, Any]]) -> list[str]:
    return [r["type"] for r in records if r["type"] != "text"]


async def test_success_exits_0_after_final_result(tmp_path: Path) -> None:
    code, records = await run_to_end(offline_spec(tmp_path, "Summarise the plan"), tmp_path)
    assert code == 0
    assert records[0] == {
        **records[0],
        "seq": 1,
        "type": "user_message",
        "text": "Summarise the plan",
    }
    assert kinds(records) == ["user_message", "agent_start", "agent_end", "final_result"]
    assert any(r["type"] == "text" for r in records)
    assert "> Summarise the plan" in records[-1]["text"]


async def test_a_provider_failure_exits_1_after_an_error(tmp_path: Path) -> None:
    code, records = await run_to_end(offline_spec(tmp_path, "/fail upstream exploded"), tmp_path)
    assert code == 1
    assert records[-1]["type"] == "error"
    assert records[-1]["message"] == "offline model: upstream exploded"


async def test_block_exits_3(tmp_path: Path) -> None:
    spec = offline_spec(tmp_path, "/block which customer?", agentId="triage")
    code, records = await run_to_end(spec, tmp_path)
    assert code == 3
    assert records[-1]["type"] == "blocked" and records[-1]["reason"] == "which customer?"


async def test_handoff_and_parallel_tools(tmp_path: Path) -> None:
    prompt = "\n".join(
        [
            "Write two files",
            "/handoff writer",
            '/tool write_file {"path": "one.txt", "content": "1"}',
            '/tool write_file {"path": "two.txt", "content": "2"}',
            "/artifact summary.md",
            "Two files written.",
        ]
    )
    spec = offline_spec(tmp_path, prompt, agentId="triage")
    code, records = await run_to_end(spec, tmp_path)
    assert code == 0
    assert kinds(records)[:5] == [
        "user_message",
        "agent_start",
        "handoff",
        "agent_end",
        "agent_start",
    ]
    starts = [r for r in records if r["type"] == "agent_tool_start"]
    assert [s["toolName"] for s in starts] == ["write_file", "write_file", "save_artifact"]
    assert starts[0]["seq"] + 1 == starts[1]["seq"], (
        "both calls of the step start before either ends"
    )
    assert (tmp_path / "workspaces" / "1" / "two.txt").read_text() == "2"
    assert (tmp_path / "artifacts" / "1" / "summary.md").read_text() == "Two files written."
    assert records[-1]["type"] == "final_result" and records[-1]["agentName"] == "writer"


async def test_the_step_limit_exits_1(tmp_path: Path) -> None:
    prompt = "\n".join(["/tool list_files {}", "/sleep 0"] * 4)
    spec = offline_spec(tmp_path, prompt, limits={"maxSteps": 2})
    code, records = await run_to_end(spec, tmp_path)
    assert code == 1
    assert "within 2 steps" in records[-1]["message"]


async def test_sigterm_cancels_with_a_record_and_exit_143(tmp_path: Path) -> None:
    spec = offline_spec(tmp_path, "/sleep 600\nslow please")
    proc = await spawn_runner(spec)
    try:
        await wait_for_record(Path(spec["logPath"]), "agent_start")
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            code = await proc.wait()
    finally:
        await stop_process(proc, 1.0)
        await proc.stdin.aclose()  # type: ignore[union-attr]
    assert code == 143
    last = read_records(spec["logPath"])[-1]
    assert last["type"] == "error"
    assert last["message"] == "run cancelled (SIGTERM)" and last["cancelled"] is True


async def test_stdin_eof_means_the_parent_died_and_the_runner_stops_at_once(tmp_path: Path) -> None:
    spec = offline_spec(tmp_path, "/sleep 600\nslow please")
    proc = await spawn_runner(spec)
    try:
        await wait_for_record(Path(spec["logPath"]), "agent_start")
        await proc.stdin.aclose()  # type: ignore[union-attr]
        # Ending at all, long before its sleep is over, is stopping at once.
        with trio.fail_after(30):
            code = await proc.wait()
    finally:
        await stop_process(proc, 1.0)
    assert code == 1
    last = read_records(spec["logPath"])[-1]
    assert last["type"] == "error" and "parent went away" in last["message"]


async def test_a_runner_told_of_each_lease_renewal_runs_past_its_lease(tmp_path: Path) -> None:
    # A lease of 2 s: unrenewed, the runner would stop itself after 1.5 s.
    spec = offline_spec(tmp_path, "/sleep 3\nThen answer.", lease={"seconds": 2})
    proc = await spawn_runner(spec)
    try:
        async with trio.open_nursery() as nursery:

            async def renew() -> None:
                while True:
                    tell_lease_renewed(proc)
                    await trio.sleep(0.1)

            nursery.start_soon(renew)
            with trio.fail_after(30):
                code = await proc.wait()
            nursery.cancel_scope.cancel()
    finally:
        await stop_process(proc, 1.0)
        await proc.stdin.aclose()  # type: ignore[union-attr]
        tell_lease_renewed(proc)  # its stdin closed: nothing is written, nothing raised
    assert code == 0
    assert read_records(spec["logPath"])[-1]["type"] == "final_result"


async def test_a_runner_told_of_no_lease_renewal_stops_itself(tmp_path: Path) -> None:
    spec = offline_spec(tmp_path, "/sleep 600\nslow please", lease={"seconds": 1})
    proc = await spawn_runner(spec)
    try:
        # Ending at all, long before its sleep is over, is stopping itself.
        with trio.fail_after(30):
            code = await proc.wait()
    finally:
        await stop_process(proc, 1.0)
        await proc.stdin.aclose()  # type: ignore[union-attr]
    assert code == LEASE_LAPSED_EXIT
    last = read_records(spec["logPath"])[-1]
    assert last["type"] == "error" and last["interrupted"] is True
    assert "lease lapsed" in last["message"]


async def test_kill_9_leaves_the_reaper_to_close_the_log(tmp_path: Path) -> None:
    spec = offline_spec(tmp_path, "/sleep 30")
    proc = await spawn_runner(spec)
    try:
        await wait_for_record(Path(spec["logPath"]), "agent_start")
        proc.send_signal(signal.SIGKILL)
        with trio.fail_after(30):
            code = await proc.wait()
    finally:
        await stop_process(proc, 1.0)
        await proc.stdin.aclose()  # type: ignore[union-attr]
    assert code == -signal.SIGKILL
    assert not is_terminal(read_records(spec["logPath"])[-1])
    written = ensure_terminal(spec["logPath"], "the runner was killed by SIGKILL")
    assert written is not None
    records = read_records(spec["logPath"])
    assert records[-1]["type"] == "error" and records[-1]["seq"] == records[-2]["seq"] + 1
    assert ensure_terminal(spec["logPath"], "again") is None


async def test_a_malformed_spec_exits_2_with_an_error_in_its_log(tmp_path: Path) -> None:
    log_path = tmp_path / "bad.jsonl"
    code, records = await run_to_end(
        {"logPath": str(log_path), "agents": 5, "runId": "9"}, tmp_path
    )
    assert code == 2
    assert records[-1]["type"] == "error" and "bad runner spec: agents" in records[-1]["message"]


def test_a_spec_that_is_not_json_exits_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crewboard.runner"],
        input=b"{nope\n",
        capture_output=True,
        timeout=20,
        env=runner_env(),
    )
    assert done.returncode == 2
    assert b"not valid JSON" in done.stderr


async def test_an_openai_compatible_provider_end_to_end(tmp_path: Path) -> None:
    key = "sk-live-" + "0123456789abcdef"
    with fake_openai() as server:
        server.script(
            Reply.tools([("write_file", '{"path": "out.txt", "content": "from the model"}')]),
            Reply.text("All done."),
        )
        model = {
            "spec": "fake:m",
            "provider": "fake",
            "name": "m",
            "baseUrl": server.base_url,
            "apiKey": key,
        }
        code, records = await run_to_end(offline_spec(tmp_path, "go", model=model), tmp_path)
        assert server.requests[1]["body"]["messages"][-1]["role"] == "tool"
    assert code == 0
    assert records[-1]["text"] == "All done."
    assert records[-1]["usage"]["requests"] == 2
    assert (tmp_path / "workspaces" / "1" / "out.txt").read_text() == "from the model"


async def test_a_provider_refusal_is_the_error_record_without_the_key(tmp_path: Path) -> None:
    key = "sk-live-" + "fedcba9876543210"
    with fake_openai() as server:
        server.script(Reply.error(401, f"Incorrect API key provided: {key}"))
        model = {
            "spec": "fake:m",
            "provider": "fake",
            "name": "m",
            "baseUrl": server.base_url,
            "apiKey": key,
        }
        spec = offline_spec(tmp_path, "go", model=model)
        code, records = await run_to_end(spec, tmp_path)
    assert code == 1
    assert "HTTP 401: Incorrect API key provided" in records[-1]["message"]
    assert key not in Path(spec["logPath"]).read_text()
    assert key not in (tmp_path / "stderr.txt").read_text()


def test_the_offline_path_imports_nothing_heavy(tmp_path: Path) -> None:
    spec = offline_spec(tmp_path, '/tool write_file {"path": "a", "content": "b"}\nhello')
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "crewboard.runner"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=runner_env(),
    )
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(json.dumps(spec).encode() + b"\n")
    proc.stdin.flush()
    try:
        stderr = proc.stderr.read().decode()  # until the runner exits (stdin stays open)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.stdin.close()
        proc.stderr.close()
    modules = {line.split("|")[-1].strip() for line in stderr.splitlines() if "|" in line}
    imported = {module.split(".")[0] for module in modules}
    assert "crewboard" in imported
    assert not imported & {"trio", "httpx", "yaml", "peewee", "jinja2", "quart", "anyio"}
    # Nothing of MCP: the SDK (and its pydantic) load only for a preset naming a server.
    assert not imported & {"mcp", "mcp_types", "pydantic", "httpx2"}
    assert not modules & {"crewboard.mcpspec", "crewboard.runner.mcp"}
    assert os.path.exists(spec["logPath"])


@pytest.mark.parametrize("forked", [True, False], ids=["forked", "spawned"])
async def test_what_a_runner_prints_on_stderr_comes_back_with_its_exit(
    tmp_path: Path, forked: bool
) -> None:
    ended: list[RunnerExit] = []

    async def started(proc: RunnerProcess) -> None:
        pass

    async def end(runner_exit: RunnerExit) -> None:
        ended.append(runner_exit)

    async with trio.open_nursery() as nursery:
        template = ForkServer() if forked else None
        if template is not None:
            await nursery.start(template.serve)
        for spec in (
            {"logPath": str(tmp_path / "bad.jsonl"), "agents": 5, "runId": "9"},
            offline_spec(tmp_path, "Say hello."),
        ):
            with trio.fail_after(20):
                await run_runner(
                    spec,
                    trio.CancelScope(),
                    grace_s=1.0,
                    started=started,
                    ended=end,
                    template=template,
                )
        nursery.cancel_scope.cancel()
    refused, answered = ended
    assert refused.returncode == 2
    assert refused.stderr.startswith(b"crewboard runner: bad runner spec: agents")
    assert answered.returncode == 0 and answered.stderr == b""


def test_a_runners_stderr_keeps_at_most_its_cap_in_memory() -> None:
    buffer = StderrBuffer(max_bytes=64 * 1024)
    try:
        # A writer far past the cap: what fits is kept, the rest refused.
        subprocess.run(
            ["sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x"],
            stderr=subprocess.DEVNULL,
            stdout=buffer.fileno(),
            timeout=20,
        )
        kept = buffer.read()
    finally:
        buffer.close()
    assert kept == b"x" * (64 * 1024)
