"""Real runner subprocesses against the fake OpenAI server playing what real
model servers do (llama-cpp-python, llama.cpp): refusing null content and
streamed tool choice, ignoring include_usage, cutting answers at max_tokens,
and serving one request at a time, which the provider's slots respect."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import trio

from crewboard.processes import start_runner, stop_process
from crewboard.runner.providers.openai import REFUSED_STREAMING_FILE
from crewboard.sessionlog import read_records
from tests.support.fake_openai import FakeOpenAI, Reply, fake_openai
from tests.support.runner import PRESETS, offline_spec


def fake_model(server: FakeOpenAI, home: Path, **extra: Any) -> dict[str, Any]:
    return {
        "spec": "local:m",
        "provider": "local",
        "name": "m",
        "baseUrl": server.base_url,
        "apiKey": None,
        "stateDir": str(home / "run" / "providers" / "local"),
        **extra,
    }


async def run_to_end(spec: dict[str, Any], stderr: Path, timeout_s: float = 20.0) -> int:
    with open(stderr, "ab") as stderr_file:
        proc = await start_runner(spec, stderr=stderr_file.fileno())
    try:
        with trio.fail_after(timeout_s):
            return await proc.wait()
    finally:
        await stop_process(proc, 1.0)
        assert proc.stdin is not None
        await proc.stdin.aclose()


async def wait_for_record(path: Path, type_: str, timeout_s: float = 15.0) -> dict[str, Any]:
    with trio.fail_after(timeout_s):
        while True:
            for record in read_records(path) if path.exists() else []:
                if record["type"] == type_:
                    return record
            await trio.sleep(0.02)


async def test_a_tool_round_trip_on_a_server_as_strict_as_llama_cpp_python(tmp_path: Path) -> None:
    with fake_openai() as server:
        server.refuse_streamed_tool_choice = True
        server.reports_usage = False
        server.script(
            Reply.tools([("write_file", '{"path": "out.txt", "content": "from the model"}')]),
            Reply.text("All done."),
        )
        spec = offline_spec(tmp_path, "go", model=fake_model(server, tmp_path))
        code = await run_to_end(spec, tmp_path / "stderr.txt")
        bodies = [r["body"] for r in server.requests]
    records = read_records(spec["logPath"])
    assert code == 0, records[-1]
    assert records[-1]["text"] == "All done."
    assert (tmp_path / "workspaces" / "1" / "out.txt").read_text() == "from the model"
    assert all(b["tool_choice"] == "auto" and b["max_tokens"] > 0 for b in bodies)
    # Refused streamed, asked whole, and whole again for the rest of the run.
    assert [b["stream"] for b in bodies] == [True, False, False]
    assert (tmp_path / "run" / "providers" / "local" / REFUSED_STREAMING_FILE).exists()
    assistant = bodies[2]["messages"][-2]
    assert assistant["content"] == "" and assistant["tool_calls"][0]["type"] == "function"
    assert records[-1]["usage"] == {
        "requests": 2,
        "inputTokens": None,
        "outputTokens": None,
        "totalTokens": None,
    }


async def test_max_tokens_stops_a_long_answer_with_the_limit_message(tmp_path: Path) -> None:
    presets = copy.deepcopy(PRESETS)
    presets["writer"]["maxTokens"] = 5
    with fake_openai() as server:
        server.script(Reply.text("this answer goes on and on, far past any sensible limit"))
        spec = offline_spec(tmp_path, "ramble", model=fake_model(server, tmp_path), agents=presets)
        code = await run_to_end(spec, tmp_path / "stderr.txt")
        assert server.requests[0]["body"]["max_tokens"] == 5
    last = read_records(spec["logPath"])[-1]
    assert code == 1
    assert last["type"] == "error"
    assert "the model hit its token limit (max_tokens=5)" in last["message"]


async def test_two_jobs_on_a_one_at_a_time_provider_both_finish_the_second_waits(
    tmp_path: Path,
) -> None:
    release_first = threading.Event()
    with fake_openai() as server:
        # As llama-cpp-python with interrupt_requests: a second request would
        # break the first answer. The slot keeps it from ever arriving.
        server.interrupt_on_second = True
        first_answer = Reply.text("first job done", pieces=4)
        first_answer.hold = release_first
        server.script(first_answer, Reply.text("second job done"))
        model = fake_model(server, tmp_path, maxConcurrency=1)
        specs = [offline_spec(tmp_path, f"job {i}", run_id=str(i), model=model) for i in (1, 2)]
        codes: dict[int, int] = {}

        async def run(i: int) -> None:
            codes[i] = await run_to_end(specs[i - 1], tmp_path / f"stderr-{i}.txt")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, 1)
            with trio.fail_after(15):
                while not server.requests:
                    await trio.sleep(0.02)
            nursery.start_soon(run, 2)
            waiting = await wait_for_record(Path(specs[1]["logPath"]), "waiting")
            release_first.set()
        assert server.max_in_flight == 1
    assert codes == {1: 0, 2: 0}
    assert waiting["reason"] == "waiting for the model: 1 ahead" and waiting["ahead"] == 1
    first, second = (read_records(s["logPath"]) for s in specs)
    assert first[-1]["text"] == "first job done" and second[-1]["text"] == "second job done"
    assert not any(r["type"] in ("waiting", "retry") for r in first)
    assert not any((tmp_path / "run" / "providers" / "local" / "waiting").iterdir())
