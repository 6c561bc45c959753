"""The OpenAI wire-protocol transport against a fake server on loopback:
streaming, tool calls, errors in the provider's words (never the key, never a
server path, never a wall of text), retries with backoff that honours
Retry-After, broken and interrupted streams, and the non-streamed fallback for
servers that cannot stream an automatic tool choice."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crewboard.runner.loop import DEFAULT_MAX_TOKENS, AgentLoop
from crewboard.runner.providers import (
    ProviderError,
    StreamInterrupted,
    open_transport,
    public_message,
)
from crewboard.runner.providers.openai import (
    REFUSED_STREAMING_FILE,
    OpenAITransport,
    backoff_s,
    refuses_streamed_tools,
    retry_after_s,
)
from crewboard.runner.session_log import RunLog
from crewboard.runner.spec import parse_spec
from crewboard.runner.stream import ModelTurn, assemble
from crewboard.runner.tools.base import ToolContext
from crewboard.sessionlog import read_records
from tests.support.fake_openai import FakeOpenAI, Reply, chunk, fake_openai

KEY = "sk-test-" + "abcdef0123456789"
REQUEST = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "list_files", "arguments": "{}"},
}
TOOLS = [{"type": "function", "function": {"name": "list_files", "parameters": {}}}]


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with fake_openai() as server:
        yield server


def transport(
    server: FakeOpenAI,
    waits: list[float] | None = None,
    provider: str = "fake",
    state_dir: Path | None = None,
) -> OpenAITransport:
    return OpenAITransport(
        server.base_url,
        KEY,
        provider=provider,
        state_dir=state_dir,
        sleep=(waits.append if waits is not None else lambda _: None),
        timeout=httpx.Timeout(5.0),
    )


def run(t: OpenAITransport) -> ModelTurn:
    with t:
        return assemble(t.stream(dict(REQUEST)), lambda _: None)


def test_streamed_text_and_the_request_sent(server: FakeOpenAI) -> None:
    server.script(Reply.text("Hello from the fake"))
    turn = run(transport(server))
    assert turn.text == "Hello from the fake"
    assert turn.usage["total_tokens"] == 15
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == f"Bearer {KEY}"
    assert sent["body"]["stream"] is True


def test_streamed_parallel_tool_calls(server: FakeOpenAI) -> None:
    server.script(
        Reply.tools([("read_file", '{"path": "a.txt"}'), ("http_get", '{"url": "https://x.org"}')])
    )
    turn = run(transport(server))
    assert [(c.name, c.arguments) for c in turn.tool_calls] == [
        ("read_file", '{"path": "a.txt"}'),
        ("http_get", '{"url": "https://x.org"}'),
    ]


def test_401_reports_the_providers_message_without_the_key(server: FakeOpenAI) -> None:
    server.script(Reply.error(401, f"Incorrect API key provided: {KEY}. Find your key at ..."))
    with pytest.raises(ProviderError) as caught:
        run(transport(server))
    message = str(caught.value)
    assert "HTTP 401" in message and "Incorrect API key provided" in message
    assert KEY not in message
    assert len(server.requests) == 1, "a 401 is not retried"


def test_429_is_retried_after_the_servers_retry_after(server: FakeOpenAI) -> None:
    server.script(Reply.error(429, "slow down", {"Retry-After": "7"}), Reply.text("ok now"))
    waits: list[float] = []
    assert run(transport(server, waits)).text == "ok now"
    assert waits == [7.0]


def test_503s_back_off_exponentially_then_give_up(server: FakeOpenAI) -> None:
    server.script(*[Reply.error(503, "the server is overloaded") for _ in range(4)])
    waits: list[float] = []
    with pytest.raises(ProviderError, match="HTTP 503: the server is overloaded"):
        run(transport(server, waits))
    assert waits == [1.0, 2.0, 4.0]
    assert len(server.requests) == 4


def test_a_500_is_retried_once_only(server: FakeOpenAI) -> None:
    server.script(*[Reply.error(500, "the server had an error") for _ in range(4)])
    waits: list[float] = []
    with pytest.raises(ProviderError, match="HTTP 500: the server had an error"):
        run(transport(server, waits))
    assert waits == [1.0]
    assert len(server.requests) == 2


def test_a_500_refusing_the_requests_shape_is_not_retried(server: FakeOpenAI) -> None:
    request = {
        **REQUEST,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ],
    }
    with transport(server) as t, pytest.raises(ProviderError) as caught:
        assemble(t.stream(request), lambda _: None)
    message = str(caught.value)
    assert "HTTP 500" in message and "Input should be a valid string" in message
    assert "/srv/llama" not in message and "site-packages" not in message
    assert len(message) <= 300
    assert len(server.requests) == 1


def test_a_refused_connection_is_retried_then_reported() -> None:
    with fake_openai() as gone:
        base_url = gone.base_url
    waits: list[float] = []
    t = OpenAITransport(base_url, KEY, sleep=waits.append, timeout=httpx.Timeout(2.0))
    with pytest.raises(ProviderError, match="cannot reach the model"):
        run(t)
    assert len(waits) == 3


def test_a_stream_cut_off_midway_is_an_error_not_a_retry(server: FakeOpenAI) -> None:
    server.script(Reply.cut_off())
    with pytest.raises(ProviderError, match="cut off"):
        run(transport(server))
    assert len(server.requests) == 1


def test_a_malformed_chunk_is_an_error(server: FakeOpenAI) -> None:
    server.script(Reply.malformed())
    with pytest.raises(ProviderError, match="malformed chunk"):
        run(transport(server))


def test_retry_after_parsing_and_bounds() -> None:
    assert retry_after_s("3") == 3.0
    assert retry_after_s("garbage") is None
    assert retry_after_s(None) is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert backoff_s(1, None) == 1.0 and backoff_s(3, None) == 4.0
    assert backoff_s(1, 3600.0) == 30.0, "a huge Retry-After is capped"


def test_llama_cpp_error_lines_are_reported_in_the_servers_words(server: FakeOpenAI) -> None:
    line = b'error: {"code": 400, "message": "the request exceeds the available context size"}'
    server.script(Reply(events=[line], done=False))
    with pytest.raises(ProviderError, match="exceeds the available context size"):
        run(transport(server))


def test_done_without_a_finish_reason_is_an_interruption(server: FakeOpenAI) -> None:
    server.script(Reply(events=[chunk({"content": "half an ans"})], done=True))
    with pytest.raises(StreamInterrupted, match="interrupted the answer"):
        run(transport(server))


def test_a_second_request_interrupts_a_running_stream(server: FakeOpenAI) -> None:
    server.interrupt_on_second = True
    slow = Reply.text("one two three four five six", pieces=6)
    slow.delay_s = 0.2
    server.script(slow, Reply.text("quick"))
    caught: list[BaseException] = []
    first_text = threading.Event()

    def first() -> None:
        with transport(server) as t:
            try:
                assemble(t.stream(dict(REQUEST)), lambda _: first_text.set())
            except BaseException as exc:
                caught.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_text.wait(5)
    assert run(transport(server)).text == "quick"
    thread.join(5)
    assert len(caught) == 1 and isinstance(caught[0], StreamInterrupted)


def test_usage_the_server_ignores_is_none_not_zero(server: FakeOpenAI) -> None:
    server.reports_usage = False
    server.script(Reply.text("no usage here"))
    turn = run(transport(server))
    assert turn.text == "no usage here"
    assert turn.usage is None


def test_max_tokens_cuts_the_answer_with_finish_reason_length(server: FakeOpenAI) -> None:
    server.script(Reply.text("one two three four five six seven eight"))
    with transport(server) as t:
        turn = assemble(t.stream({**REQUEST, "max_tokens": 3}), lambda _: None)
    assert turn.finish_reason == "length"
    assert len(turn.text.split()) <= 3


def test_a_refused_streamed_tool_choice_falls_back_to_one_whole_answer(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    server.refuse_streamed_tool_choice = True
    server.script(Reply.tools([("list_files", '{"path": "."}')]), Reply.text("second step"))
    request = {**REQUEST, "tools": TOOLS, "tool_choice": "auto"}
    state = tmp_path / "providers" / "picky"
    with transport(server, provider="picky-1", state_dir=state) as t:
        turn = assemble(t.stream(dict(request)), lambda _: None)
    assert [(c.name, c.arguments) for c in turn.tool_calls] == [("list_files", '{"path": "."}')]
    assert turn.usage == {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}
    assert [r["body"]["stream"] for r in server.requests] == [True, False]
    assert "stream_options" not in server.requests[1]["body"]
    assert (state / REFUSED_STREAMING_FILE).exists(), "remembered for the host's other runners"
    # Another runner (another process: another provider memory) reads the file.
    with transport(server, provider="picky-2", state_dir=state) as t:
        assert assemble(t.stream(dict(request)), lambda _: None).text == "second step"
    assert [r["body"]["stream"] for r in server.requests] == [True, False, False]


def test_a_500_saying_streamed_tools_are_unsupported_falls_back_too(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    server.script(
        Reply.error(500, "Automatic streaming tool choice is not supported"), Reply.text("whole")
    )
    request = {**REQUEST, "tools": TOOLS, "tool_choice": "auto"}
    with transport(server, provider="picky-3", state_dir=tmp_path) as t:
        assert assemble(t.stream(request), lambda _: None).text == "whole"
    assert [r["body"]["stream"] for r in server.requests] == [True, False]


def test_a_stream_broken_before_its_first_chunk_is_tried_whole_once(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    server.script(Reply(events=[], done=False, cut=True), Reply.text("whole"))
    request = {**REQUEST, "tools": TOOLS, "tool_choice": "auto"}
    with transport(server, provider="picky-4", state_dir=tmp_path) as t:
        assert assemble(t.stream(request), lambda _: None).text == "whole"
    assert [r["body"]["stream"] for r in server.requests] == [True, False]


def test_error_messages_are_trimmed_and_carry_no_paths_or_keys(server: FakeOpenAI) -> None:
    noise = "x" * 2000
    server.script(
        Reply.error(
            400,
            f"bad request for key {KEY} in /home/llama/models/qwen2.5-0.5b.gguf "
            f"at C:\\Users\\me\\llama\\server.py: {noise}",
        )
    )
    with pytest.raises(ProviderError) as caught:
        run(transport(server))
    message = str(caught.value)
    assert len(message) <= 300 and message.endswith("…")
    assert KEY not in message
    assert "/home/llama" not in message and "Users" not in message
    assert "<path>" in message


def test_public_message_keeps_urls_and_plain_words() -> None:
    text = "see https://api.example.com/v1/docs and http://127.0.0.1:8080/v1 for 3/4 of it"
    assert public_message(text) == text
    assert public_message("open /etc/passwd now") == "open <path> now"


def test_streamed_tool_refusals_are_recognised() -> None:
    assert refuses_streamed_tools("Automatic streaming tool choice is not supported")
    assert refuses_streamed_tools("Streaming is not supported with function calling")
    assert not refuses_streamed_tools("Input should be a valid string")


# The agent loop against a strict server ----------------------------------------------------

AGENTS = {
    "writer": {
        "name": "Writer",
        "instructions": "Write it.",
        "tools": ["list_files", "write_file"],
    },
}


def run_agent(
    tmp_path: Path,
    server: FakeOpenAI,
    *,
    model: dict[str, Any] | None = None,
    agent: dict[str, Any] | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    raw = {
        "runId": "1",
        "agentId": "writer",
        "agents": {"writer": {**AGENTS["writer"], **(agent or {})}},
        "model": {
            "spec": "fake:m",
            "provider": "fake",
            "name": "m",
            "baseUrl": server.base_url,
            "apiKey": KEY,
            **(model or {}),
        },
        "prompt": "go",
        "workspace": str(tmp_path / "ws"),
        "logPath": str(tmp_path / "run.jsonl"),
        "artifactDir": str(tmp_path / "artifacts"),
    }
    spec = parse_spec(raw)
    log = RunLog(spec.log_path, secrets=(KEY,))
    ctx = ToolContext(spec.workspace, spec.artifact_dir, spec.limits, secrets=(KEY,))
    spec.workspace.mkdir(parents=True, exist_ok=True)
    t = open_transport(spec.model)
    try:
        code = AgentLoop(spec, log, t, ctx).run()
    finally:
        t.close()
    return code, read_records(spec.log_path)


def test_a_tool_round_trip_in_the_form_strict_servers_accept(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    server.script(Reply.tools([("list_files", '{"path": "."}')]), Reply.text("All listed."))
    code, records = run_agent(tmp_path, server)
    assert code == 0 and records[-1]["text"] == "All listed."
    first = server.requests[0]["body"]
    assert first["tool_choice"] == "auto" and first["max_tokens"] == DEFAULT_MAX_TOKENS
    assistant, tool = server.requests[1]["body"]["messages"][-2:]
    assert assistant == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_fake_0",
                "type": "function",
                "function": {"name": "list_files", "arguments": '{"path": "."}'},
            }
        ],
    }
    assert tool["role"] == "tool" and tool["tool_call_id"] == "call_fake_0"
    assert isinstance(tool["content"], str)


def test_max_tokens_comes_from_the_preset_then_the_provider(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    server.script(Reply.text("short"), Reply.text("short"))
    run_agent(tmp_path / "a", server, model={"maxTokens": 50}, agent={"maxTokens": 7})
    run_agent(tmp_path / "b", server, model={"maxTokens": 50})
    assert [r["body"]["max_tokens"] for r in server.requests] == [7, 50]


def test_openai_itself_gets_max_completion_tokens(server: FakeOpenAI, tmp_path: Path) -> None:
    code, _ = run_agent(tmp_path, server, model={"provider": "openai", "spec": "openai:m"})
    assert code == 0
    body = server.requests[0]["body"]
    assert body["max_completion_tokens"] == DEFAULT_MAX_TOKENS and "max_tokens" not in body


def test_hitting_max_tokens_ends_the_run_with_the_limit_named(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    server.script(Reply.text("a rambling answer that goes on and on and on"))
    code, records = run_agent(tmp_path, server, agent={"maxTokens": 4})
    assert code == 1
    assert records[-1]["type"] == "error"
    assert "the model hit its token limit (max_tokens=4)" in records[-1]["message"]
    assert records[-1]["maxTokens"] == 4


def test_an_interrupted_answer_is_asked_for_once_more(server: FakeOpenAI, tmp_path: Path) -> None:
    server.script(Reply(events=[chunk({"content": "half"})]), Reply.text("whole answer"))
    code, records = run_agent(tmp_path, server)
    assert code == 0 and records[-1]["text"] == "whole answer"
    retry = [r for r in records if r["type"] == "retry"]
    assert len(retry) == 1 and "interrupted the answer" in retry[0]["reason"]


def test_an_answer_interrupted_twice_is_reported(server: FakeOpenAI, tmp_path: Path) -> None:
    server.script(*[Reply(events=[chunk({"content": "half"})]) for _ in range(2)])
    code, records = run_agent(tmp_path, server)
    assert code == 1
    assert "the model server interrupted the answer" in records[-1]["message"]
    assert len(server.requests) == 2


def test_usage_not_reported_reads_null_in_the_result(server: FakeOpenAI, tmp_path: Path) -> None:
    server.reports_usage = False
    server.script(Reply.tools([("list_files", "{}")]), Reply.text("done"))
    code, records = run_agent(tmp_path, server)
    assert code == 0
    assert records[-1]["usage"] == {
        "requests": 2,
        "inputTokens": None,
        "outputTokens": None,
        "totalTokens": None,
    }


def test_text_tool_calls_become_real_calls_when_the_provider_says_so(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    written = '<tool_call>\n{"name": "list_files", "arguments": {"path": "."}}\n</tool_call>'
    server.script(Reply.text(written), Reply.text("Listed."))
    code, records = run_agent(tmp_path, server, model={"textToolCalls": True})
    assert code == 0 and records[-1]["text"] == "Listed."
    start = next(r for r in records if r["type"] == "agent_tool_start")
    assert (start["toolName"], start["toolArgumentsStr"]) == ("list_files", '{"path": "."}')
    assistant = server.requests[1]["body"]["messages"][-2]
    assert assistant["content"] == "" and assistant["tool_calls"][0]["id"] == start["callId"]


def test_text_tool_calls_stay_text_by_default(server: FakeOpenAI, tmp_path: Path) -> None:
    written = '{"name": "list_files", "arguments": {"path": "."}}'
    server.script(Reply.text(written))
    code, records = run_agent(tmp_path, server)
    assert code == 0 and records[-1]["text"] == written
    assert not any(r["type"] == "agent_tool_start" for r in records)
