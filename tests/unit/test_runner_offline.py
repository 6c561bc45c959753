"""The offline model: its directive convention, and that it streams the same
chunk shapes as a real provider through the same assembly code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crewboard.runner.providers import ProviderError
from crewboard.runner.providers.offline import INTRO, OfflineTransport, parse_directives
from crewboard.runner.stream import ModelTurn, assemble

# What a request offers when a test does not say: enough for every directive.
EVERY_TOOL = ("list_files", "save_artifact", "block", "transfer_to_writer")


def offer(*names: str) -> list[dict[str, Any]]:
    """The ``tools`` of a request offering these tool names."""
    return [{"type": "function", "function": {"name": n, "parameters": {}}} for n in names]


def step(
    prompt: str,
    later: list[dict[str, Any]] | None = None,
    sleeps: list[float] | None = None,
    tools: tuple[str, ...] = EVERY_TOOL,
) -> ModelTurn:
    messages = [{"role": "system", "content": "be good"}, {"role": "user", "content": prompt}]
    transport = OfflineTransport(sleep=(sleeps.append if sleeps is not None else lambda _: None))
    request = {"messages": messages + (later or []), "tools": offer(*tools)}
    return assemble(transport.stream(request), lambda _: None)


def after(turn: ModelTurn, result: str = "ok") -> list[dict[str, Any]]:
    """The history after a step: its assistant message and a result per call."""
    return [turn.message()] + [
        {"role": "tool", "tool_call_id": c.id, "content": result} for c in turn.tool_calls
    ]


def test_without_directives_it_answers_in_one_step_saying_what_it_is() -> None:
    chunks = list(
        OfflineTransport().stream({"messages": [{"role": "user", "content": "Summarise X"}]})
    )
    texts = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert len([t for t in texts if t]) >= 2, "the answer streams in several chunks"
    turn = assemble(chunks, lambda _: None)
    assert turn.tool_calls == []
    assert turn.finish_reason == "stop"
    assert turn.text.startswith(INTRO)
    assert "> Summarise X" in turn.text
    assert (
        turn.usage["total_tokens"] == turn.usage["prompt_tokens"] + turn.usage["completion_tokens"]
    )


def test_it_is_deterministic() -> None:
    request = {"messages": [{"role": "user", "content": 'same\n/tool read_file {"path": "a"}'}]}
    assert list(OfflineTransport().stream(request)) == list(OfflineTransport().stream(request))


def test_consecutive_tool_lines_are_parallel_calls_with_split_arguments() -> None:
    prompt = 'go\n/tool read_file {"path": "a-rather-long-file-name.txt"}\n/tool list_files {}'
    chunks = list(OfflineTransport().stream({"messages": [{"role": "user", "content": prompt}]}))
    fragments = [
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert len(fragments) > 4, "arguments arrive in pieces"
    turn = assemble(chunks, lambda _: None)
    assert turn.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in turn.tool_calls] == [
        ("read_file", {"path": "a-rather-long-file-name.txt"}),
        ("list_files", {}),
    ]
    assert turn.tool_calls[0].id != turn.tool_calls[1].id


def test_directives_run_in_order_one_step_each_then_the_answer_mentions_results() -> None:
    prompt = "Do it\n/tool list_files\n/handoff writer\n/artifact brief.md\n# Brief\nBody line"
    first = step(prompt)
    assert [c.name for c in first.tool_calls] == ["list_files"]
    history = after(first, "a.txt (3 bytes)")
    second = step(prompt, history)
    assert [c.name for c in second.tool_calls] == ["transfer_to_writer"]
    history += after(second)
    third = step(prompt, history)
    assert [c.name for c in third.tool_calls] == ["save_artifact"]
    assert json.loads(third.tool_calls[0].arguments) == {
        "name": "brief.md",
        "content": "# Brief\nBody line",
    }
    history += after(third, "saved artifact brief.md (17 bytes)")
    final = step(prompt, history)
    assert final.tool_calls == []
    assert "> Do it" in final.text
    assert "Body line" not in final.text, "artifact content is not part of the question"
    assert "a.txt (3 bytes)" in final.text and "saved artifact brief.md" in final.text


def test_block_fail_and_sleep() -> None:
    assert json.loads(step("/block need a key").tool_calls[0].arguments) == {"reason": "need a key"}
    with pytest.raises(ProviderError, match="offline model: rate limited"):
        step("/fail rate limited")
    slept: list[float] = []
    turn = step("/sleep 2.5\nhello", sleeps=slept)
    assert slept == [2.5]
    assert "> hello" in turn.text


def test_only_the_latest_user_message_scripts_the_model() -> None:
    messages = [
        {"role": "user", "content": "/tool shell {}"},
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": "just chat"},
    ]
    turn = assemble(OfflineTransport().stream({"messages": messages}), lambda _: None)
    assert turn.tool_calls == []
    assert "> just chat" in turn.text


def test_parse_directives_keeps_unknown_slash_words_as_text() -> None:
    steps, plain = parse_directives("/usr/bin is a folder\n/tool a {}\n/tool b {}\n/sleep x")
    assert plain == ["/usr/bin is a folder", "/sleep x"]
    assert [[name for name, _ in s.calls] for s in steps] == [["a", "b"]]


def test_a_directive_the_agent_cannot_carry_out_says_what_would_work_and_the_script_goes_on() -> (
    None
):
    prompt = "Route it\n/handoff writer\n/artifact brief.md\n# Brief\n/tool list_files {}"
    # An assistant-like agent: file tools, no handoffs, no save_artifact.
    tools = ("read_file", "write_file", "list_files")
    first = step(prompt, tools=tools)
    assert [c.name for c in first.tool_calls] == ["list_files"], "the next directive ran"
    assert "`/handoff writer` was not carried out" in first.text
    assert "`/handoff` needs a preset with handoffs, such as triage" in first.text
    assert "`/artifact` needs a preset with the save_artifact tool, such as coder or writer" in (
        first.text
    )
    final = step(prompt, after(first, "a.txt (3 bytes)"), tools=tools)
    assert final.tool_calls == [] and "a.txt (3 bytes)" in final.text
    assert "was not carried out" not in final.text, "each note is said once"


def test_a_last_directive_that_cannot_be_carried_out_is_explained_in_the_answer() -> None:
    final = step("Please stop\n/block need the budget", tools=())
    assert final.tool_calls == []
    assert "`/block` was not carried out" in final.text
    assert "such as coder or triage (in a job every agent has it)" in final.text
    assert "> Please stop" in final.text


def test_a_handoff_to_a_preset_this_agent_cannot_reach_names_those_it_can() -> None:
    turn = step("/handoff coder", tools=("block", "transfer_to_writer", "transfer_to_researcher"))
    assert turn.tool_calls == []
    assert "this agent can hand off only to researcher, writer" in turn.text
