"""MCP tools called by a real model: llama.cpp's server with SmolLM2 (the
local model), behind the steering proxy that forces the call (llama.cpp
takes no named tool choice; see ``force_tool``), from a chat turn through
the web and from a job through the supervisor, against the real
``mcp-server-time`` from PyPI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from crewboard.board.models import JobStatus
from crewboard.config import Config
from crewboard.sessionlog import read_records
from tests.conftest import TEST_SETTINGS
from tests.support import crews
from tests.support.chat import create_session
from tests.support.local_model import (
    ModelServer,
    SteeringProxy,
    force_tool,
    forced_call_ended_well,
    model_server,
    need_local_model,
    steering_proxy,
)
from tests.support.mcp import need_mcp, server_program, write_mcp_setup
from tests.support.sse_client import collect
from tests.support.supervisor import supervising, wait_for

TURN_S = 180.0
# The one argument the forced call may take: a small model picks odd zones.
PARIS = {
    "type": "object",
    "properties": {"timezone": {"type": "string", "enum": ["Europe/Paris"]}},
    "required": ["timezone"],
}


@pytest.fixture(scope="module")
def smollm2() -> Iterator[ModelServer]:
    need_local_model()
    with model_server() as server:
        yield server


@pytest.fixture
def proxy(smollm2: ModelServer) -> Iterator[SteeringProxy]:
    with steering_proxy(smollm2.base_url) as proxy:
        proxy.steer = force_tool("time__get_current_time", PARIS)
        yield proxy


@pytest.fixture
def config(tmp_path: Path, proxy: SteeringProxy) -> Config:
    need_mcp()
    home = tmp_path / "home"
    agents = write_mcp_setup(
        home,
        {"time": {"command": [server_program("mcp-server-time")]}},
        {"clock": {"model": "local:smollm2", "mcp": ["time"]}},
    )
    environ = {
        **TEST_SETTINGS,
        "CREWBOARD_AGENTS": str(agents),
        "CREWBOARD_LOCAL_MODEL": "smollm2",
        "CREWBOARD_LOCAL_MODEL_PORT": str(proxy.port),
    }
    return Config.load(home, environ=environ)


def assert_called_paris(proxy: SteeringProxy, results: list[str]) -> None:
    """The model's call reached the server, whose answer went back to the
    model. (A small model may call the tool again before it answers.)"""
    assert results, "no call of the time server ended"
    result = results[0]
    assert json.loads(result)["timezone"] == "Europe/Paris"
    offered = {t["function"]["name"] for t in proxy.sent[0]["tools"]}
    assert offered == {"time__get_current_time"}
    follow_up = proxy.sent[1]["messages"]
    assert [m["content"] for m in follow_up if m["role"] == "tool"][:1] == [result]


async def test_a_chat_turn_on_the_real_model_calls_the_time_server(
    as_alice, proxy: SteeringProxy
) -> None:
    session = await create_session(as_alice, agent="clock", modelSpec="local:smollm2")
    url = f"/api/session/newUserMessage/{session['id']}"
    # A real model on a shared machine, after a server's start: more than a
    # scripted turn's deadline, still one that catches a hang.
    async with as_alice.stream("POST", url, json={"message": "What time is it in Paris?"}) as r:
        assert r.status_code == 200
        frames = await collect(r, timeout_s=TURN_S)
    chunks = [f.data for f in frames if f.type == "chunk"]
    starts = [c for c in chunks if c["type"] == "agent_tool_start"]
    ends = [c for c in chunks if c["type"] == "agent_tool_end"]
    forced_call_ended_well(starts, ends, "time__get_current_time")
    assert json.loads(starts[0]["toolArgumentsStr"]) == {"timezone": "Europe/Paris"}
    assert frames[-1].type == "done", frames[-1].data
    assert_called_paris(proxy, [e["result"] for e in ends])


async def test_a_job_on_the_real_model_calls_the_time_server(
    home, config: Config, proxy: SteeringProxy
) -> None:
    job_id = crews.add_job("What time is it in Paris?", agent="clock")
    async with supervising(config):
        settled = (JobStatus.DONE, JobStatus.BLOCKED)
        await wait_for(lambda: crews.job(job_id).status in settled, TURN_S, "the job to settle")
    runs = crews.runs(job_id)
    assert crews.job(job_id).status == JobStatus.DONE, [(r.outcome, r.error) for r in runs]
    (run,) = runs
    records = read_records(run.log_path)
    starts = [r for r in records if r["type"] == "agent_tool_start"]
    ends = [r for r in records if r["type"] == "agent_tool_end"]
    forced_call_ended_well(starts, ends, "time__get_current_time")
    assert_called_paris(proxy, [e["result"] for e in ends])
