"""Assembling streamed Chat Completions chunks into one model turn."""

from __future__ import annotations

import pytest

from crewboard.runner.providers import ProviderError
from crewboard.runner.stream import assemble
from tests.support.fake_openai import Reply, chunk


def test_text_deltas_are_reported_in_order_and_joined() -> None:
    seen: list[str] = []
    turn = assemble(Reply.text("Hello, streaming world", pieces=4).events, seen.append)
    assert "".join(seen) == turn.text == "Hello, streaming world"
    assert len(seen) == 4
    assert turn.finish_reason == "stop"
    assert turn.tool_calls == []
    assert turn.usage == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def test_parallel_tool_calls_join_argument_fragments_by_index() -> None:
    reply = Reply.tools([("read_file", '{"path": "notes.md"}'), ("list_files", '{"path": "."}')])
    turn = assemble(reply.events, lambda _: None)
    assert [(c.id, c.name, c.arguments) for c in turn.tool_calls] == [
        ("call_fake_0", "read_file", '{"path": "notes.md"}'),
        ("call_fake_1", "list_files", '{"path": "."}'),
    ]
    assert turn.finish_reason == "tool_calls"
    assert turn.message()["tool_calls"][1]["function"]["name"] == "list_files"


def test_interleaved_tool_call_deltas_still_land_on_their_call() -> None:
    events = [
        chunk(
            {"tool_calls": [{"index": 1, "id": "b", "function": {"name": "two", "arguments": "{"}}]}
        ),
        chunk(
            {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "one", "arguments": "{"}}]}
        ),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "}"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
        chunk({}, "tool_calls"),
    ]
    turn = assemble(events, lambda _: None)
    assert [(c.id, c.name, c.arguments) for c in turn.tool_calls] == [
        ("a", "one", "{}"),
        ("b", "two", "{}"),
    ]


def test_a_stream_without_a_finish_reason_was_cut_off() -> None:
    with pytest.raises(ProviderError, match="cut off"):
        assemble([chunk({"content": "half an ans"})], lambda _: None)


@pytest.mark.parametrize(
    "bad",
    [
        "not a dict",
        {"choices": "nope"},
        {"choices": [{"index": 0, "delta": "text"}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": "x"}]}}]},
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 5}}]}}
            ]
        },
    ],
)
def test_malformed_chunks_are_provider_errors(bad: object) -> None:
    with pytest.raises(ProviderError, match="malformed chunk"):
        assemble([bad], lambda _: None)


def test_an_error_object_in_the_stream_is_reported_with_its_message() -> None:
    with pytest.raises(ProviderError, match="context length exceeded"):
        assemble([{"error": {"message": "context length exceeded"}}], lambda _: None)


def test_a_tool_call_without_a_name_is_refused() -> None:
    events = [
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
        chunk({}, "stop"),
    ]
    with pytest.raises(ProviderError, match="without a function name"):
        assemble(events, lambda _: None)


def test_the_assistant_turn_with_tool_calls_carries_content_as_a_string() -> None:
    turn = assemble(Reply.tools([("list_files", "{}")]).events, lambda _: None)
    message = turn.message()
    assert message["content"] == "", "strict servers refuse null content"
    assert message["tool_calls"] == [
        {
            "id": "call_fake_0",
            "type": "function",
            "function": {"name": "list_files", "arguments": "{}"},
        }
    ]


def test_usage_a_server_does_not_report_is_none() -> None:
    events = [e for e in Reply.text("hi").events if "usage" not in e]
    assert assemble(events, lambda _: None).usage is None
    empty = [*events, {"choices": [], "usage": {"prompt_tokens": None}}]
    assert assemble(empty, lambda _: None).usage is None
