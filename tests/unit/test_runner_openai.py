"""The OpenAI wire-protocol transport against a fake server on loopback:
streaming, tool calls, errors in the provider's words (never the key),
retries with backoff that honours Retry-After, and broken streams."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from crewboard.runner.providers import ProviderError
from crewboard.runner.providers.openai import OpenAITransport, backoff_s, retry_after_s
from crewboard.runner.stream import ModelTurn, assemble
from tests.support.fake_openai import FakeOpenAI, Reply, fake_openai

KEY = "sk-test-" + "abcdef0123456789"
REQUEST = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with fake_openai() as server:
        yield server


def transport(server: FakeOpenAI, waits: list[float] | None = None) -> OpenAITransport:
    return OpenAITransport(
        server.base_url,
        KEY,
        provider="fake",
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


def test_500s_back_off_exponentially_then_give_up(server: FakeOpenAI) -> None:
    server.script(*[Reply.error(500, "the server had an error") for _ in range(4)])
    waits: list[float] = []
    with pytest.raises(ProviderError, match="HTTP 500: the server had an error"):
        run(transport(server, waits))
    assert waits == [1.0, 2.0, 4.0]
    assert len(server.requests) == 4


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
