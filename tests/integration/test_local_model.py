"""Chat turns through the live web app and real runners against a real model
server: llama.cpp's (xllamacpp) with SmolLM2-135M, as ``local:smollm2``.

Only shapes are checked, never the model's words. A steering proxy between
the runner and the server shapes requests where a test needs a shape the
model would not choose (see :mod:`tests.support.local_model`). Skipped with
the reason when xllamacpp or the weights are missing; under
CREWBOARD_TEST_REQUIRE_ALL=1 (CI) that fails instead.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from crewboard.board.models import JobStatus
from crewboard.config import ProviderEndpoint
from crewboard.sessionlog import read_records
from tests.conftest import make_config
from tests.support import crews
from tests.support.chat import create_session, next_chunk, open_turn, rest_of, send
from tests.support.crews import JobDef
from tests.support.local_model import (
    ModelServer,
    SteeringProxy,
    force_tool,
    forced_call_ended_well,
    free_port,
    model_server,
    need_local_model,
    steering_proxy,
    text_only,
)
from tests.support.sse_client import Frame
from tests.support.supervisor import supervising, wait_for

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board


@pytest.fixture(scope="session")
def smollm2() -> Iterator[ModelServer]:
    """One real model server for the whole session (it loads in about a second)."""
    need_local_model()
    with model_server() as server:
        yield server


def chunks(frames: list[Frame], kind: str) -> list[dict]:
    return [f.data for f in frames if f.type == "chunk" and f.data["type"] == kind]


async def metrics(server: ModelServer) -> dict[str, float]:
    # Off the event loop: the web app under test runs on it.
    return await trio.to_thread.run_sync(server.metrics)


class TestThroughTheProduct:
    @pytest.fixture
    def proxy(self, smollm2: ModelServer) -> Iterator[SteeringProxy]:
        with steering_proxy(smollm2.base_url) as proxy:
            yield proxy

    @pytest.fixture
    def config(self, tmp_path, proxy):
        return make_config(tmp_path / "home", local_model="smollm2", local_model_port=proxy.port)

    async def test_the_model_list_offers_the_local_model(self, as_alice):
        response = await as_alice.get("/api/models")
        assert response.status_code == 200
        ids = [m["id"] for m in response.json()]
        assert "local:smollm2" in ids and "offline:scripted" in ids

    async def test_a_chat_turn_streams_text_frames_then_done(self, as_alice, proxy):
        proxy.steer = text_only()
        session = await create_session(as_alice, modelSpec="local:smollm2")
        frames = await send(as_alice, session["id"], "Say hello.")
        assert chunks(frames, "text"), [f.type for f in frames]
        assert frames[-1].type == "done", frames[-1].data
        assert frames[-1].data["text"]
        assert proxy.statuses == [200]
        sent = proxy.sent[0]
        assert sent["stream"] is True and sent["model"] == "smollm2"

    async def test_a_forced_tool_call_goes_round_trip(self, as_alice, proxy, home):
        here = {"type": "object", "properties": {"path": {"enum": ["."]}}, "required": ["path"]}
        proxy.steer = force_tool("list_files", here)
        session = await create_session(as_alice, modelSpec="local:smollm2")
        workspace = home.workspace(f"chat-{session['id']}")
        workspace.mkdir(parents=True, exist_ok=True)
        (workspace / "notes.md").write_text("x")
        frames = await send(as_alice, session["id"], "Which files do you have?")

        started = chunks(frames, "agent_tool_start")
        ended = chunks(frames, "agent_tool_end")
        # The forced step calls list_files; what the model does with the result
        # is its own (it may look again), so only the shape is checked.
        forced_call_ended_well(started, ended, "list_files")
        assert frames[-1].type == "done", frames[-1].data
        # The server accepted the calls and their results back, and answered.
        assert len(proxy.statuses) >= 2 and set(proxy.statuses) == {200}
        follow_up = proxy.sent[1]["messages"]
        call = next(m for m in follow_up if m["role"] == "assistant" and m.get("tool_calls"))
        results = {m["tool_call_id"]: m["content"] for m in follow_up if m["role"] == "tool"}
        assert {c["function"]["name"] for c in call["tool_calls"]} == {"list_files"}
        assert set(results) == {c["id"] for c in call["tool_calls"]}
        assert all("notes.md" in content for content in results.values())

    async def test_cancelling_a_turn_stops_the_generation(self, as_alice, proxy, smollm2):
        # Past every end of an answer, up to 4000 tokens (two minutes or more):
        # only the cancel can stop it early.
        proxy.steer = text_only(4000, stop=[], ignore_eos=True)
        session = await create_session(as_alice, modelSpec="local:smollm2")
        async with open_turn(as_alice, session["id"], "Tell me a long story.") as raw:
            await next_chunk(raw, "text", timeout_s=60)
            assert (await metrics(smollm2))["requests_processing"] == 1
            closed = await as_alice.post(f"/api/session/delete/{session['id']}")
            assert closed.status_code == 204
            rest = await rest_of(raw)
        assert rest[-1].type == "error"
        with trio.fail_after(10):
            while (await metrics(smollm2))["requests_processing"] != 0:
                await trio.sleep(0.1)
        predicted = (await metrics(smollm2))["tokens_predicted_total"]
        await trio.sleep(1)
        assert (await metrics(smollm2))["tokens_predicted_total"] == predicted
        assert predicted < 4000


class TestProviderTables:
    """The real server as ``[providers.NAME]`` tables would name it: ``capped``
    with ``max_tokens = 8``, ``single`` with ``max_concurrency = 1`` (and the
    ``solo`` preset, whose jobs run on it), on a supervisor that runs two jobs
    at once."""

    @pytest.fixture
    def proxy(self, smollm2: ModelServer) -> Iterator[SteeringProxy]:
        with steering_proxy(smollm2.base_url) as proxy:
            yield proxy

    @pytest.fixture
    def config(self, tmp_path: Path, proxy: SteeringProxy):
        agents = tmp_path / "agents"
        agents.mkdir()
        (agents / "solo.agent.yaml").write_text(
            "name: Solo\ninstructions: Answer in one short sentence.\n"
            "model: single:smollm2\ntools: []\n"
        )
        base_url = proxy.base_url + "/v1"
        providers = {
            "capped": ProviderEndpoint("capped", base_url, max_tokens=8),
            "single": ProviderEndpoint("single", base_url, max_concurrency=1),
        }
        return make_config(tmp_path / "home", providers=providers, agents=(agents,), concurrency=2)

    async def test_max_tokens_stops_a_long_answer_with_the_limit_message(
        self, as_alice, proxy, home
    ):
        # Past every end of an answer: only max_tokens stops it, on the server.
        proxy.steer = text_only(None, stop=[], ignore_eos=True)
        session = await create_session(as_alice, modelSpec="capped:smollm2")
        frames = await send(as_alice, session["id"], "Tell me a long story.")
        assert proxy.statuses == [200]
        assert proxy.sent[0]["max_tokens"] == 8
        assert proxy.finish_reasons(0) == ["length"]
        usage = [c["usage"] for c in proxy.chunks(0) if c.get("usage")]
        assert usage and usage[-1]["completion_tokens"] == 8, usage
        assert frames[-1].type == "error", [f.type for f in frames]
        message = frames[-1].data["message"]
        assert "the model hit its token limit (max_tokens=8)" in message, message
        last = read_records(home.chat_log(session["id"]))[-1]
        assert last["type"] == "error" and last["maxTokens"] == 8, last

    async def test_two_jobs_on_a_one_at_a_time_provider_both_finish_the_second_waits(
        self, config, home, proxy
    ):
        proxy.steer = text_only()
        # The first request to arrive is held until the other job has said it
        # waits, so the two certainly overlap.
        proxy.gate = threading.Event()
        ids = crews.add_crew(
            {"one": JobDef("Say hello.", agent="solo"), "two": JobDef("Say hi.", agent="solo")}
        )

        def logs() -> list[list[dict]]:
            found = []
            for job_id in ids.values():
                found += [read_records(r.log_path) for r in crews.runs(job_id)]
            return found

        def a_waiting_record() -> dict | None:
            waiting = [r for log in logs() for r in log if r["type"] == "waiting"]
            return waiting[0] if waiting else None

        def both_done() -> bool:
            return all(crews.job(i).status == JobStatus.DONE for i in ids.values())

        async with supervising(config):
            await wait_for(lambda: proxy.in_flight, what="the first request at the server")
            waiting = await wait_for(a_waiting_record, 30, "the second job waiting")
            assert proxy.in_flight == 1
            proxy.gate.set()
            await wait_for(both_done, 120, "both jobs done")
            finished = await wait_for(logs)
        assert waiting["reason"] == "waiting for the model: 1 ahead" and waiting["ahead"] == 1
        waited = [log for log in finished if any(r["type"] == "waiting" for r in log)]
        assert len(finished) == 2 and len(waited) == 1
        assert all(log[-1]["type"] == "final_result" for log in finished)
        assert proxy.statuses == [200, 200]
        assert proxy.max_in_flight == 1
        assert [proxy.finish_reasons(i) for i in (0, 1)] == [["stop"], ["stop"]]


class TestWhenTheServerDies:
    @pytest.fixture
    def own_server(self) -> Iterator[ModelServer]:
        need_local_model()
        with model_server() as server:
            yield server

    @pytest.fixture
    def proxy(self, own_server: ModelServer) -> Iterator[SteeringProxy]:
        with steering_proxy(
            own_server.base_url, text_only(4000, stop=[], ignore_eos=True)
        ) as proxy:
            yield proxy

    @pytest.fixture
    def config(self, tmp_path, proxy):
        return make_config(tmp_path / "home", local_model="smollm2", local_model_port=proxy.port)

    async def test_killing_the_server_mid_stream_gives_a_clear_error(
        self, as_alice, own_server, home
    ):
        session = await create_session(as_alice, modelSpec="local:smollm2")
        async with open_turn(as_alice, session["id"], "Tell me a long story.") as raw:
            await next_chunk(raw, "text", timeout_s=60)
            os.kill(own_server.proc.popen.pid, signal.SIGKILL)
            rest = await rest_of(raw)
        error = rest[-1]
        assert error.type == "error", [f.type for f in rest]
        message = error.data["message"]
        assert message.startswith("local:") or "local" in message, message
        assert "cut off" in message or "cannot reach" in message, message
        assert "Traceback" not in message and len(message) < 500
        assert read_records(home.chat_log(session["id"]))[-1]["type"] == "error"


def test_the_model_server_stops_promptly_on_sigterm():
    need_local_model()
    with model_server() as server:
        started = time.monotonic()
        server.proc.popen.send_signal(signal.SIGTERM)
        assert server.proc.popen.wait(10) == 0
        assert time.monotonic() - started < 3.5


class TestWithTheServerDown:
    """No model needed: the local model is on, but nothing listens on its port."""

    @pytest.fixture
    def config(self, tmp_path):
        return make_config(tmp_path / "home", local_model="smollm2", local_model_port=free_port())

    async def test_the_model_list_leaves_it_out_and_says_why(self, as_alice, caplog):
        with caplog.at_level(logging.WARNING, logger="crewboard.providers"):
            response = await as_alice.get("/api/models")
        assert response.status_code == 200
        ids = [m["id"] for m in response.json()]
        assert "offline:scripted" in ids
        assert not [i for i in ids if i.startswith("local:")]
        said = [r.getMessage() for r in caplog.records]
        assert any("local" in m and "left out" in m for m in said), said

    async def test_a_turn_says_it_cannot_reach_the_model(self, as_alice):
        session = await create_session(as_alice, modelSpec="local:smollm2")
        frames = await send(as_alice, session["id"], "hello?")
        assert frames[-1].type == "error"
        assert "cannot reach the model" in frames[-1].data["message"]
