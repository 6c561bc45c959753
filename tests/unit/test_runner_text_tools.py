"""Tool calls small models write as text, taken from what real models answer
to a tools request on llama.cpp-family servers (SmolLM2, Qwen2.5, Llama 3.2
at 0.1–1B parameters), well-formed and not."""

from __future__ import annotations

import json

import pytest

from crewboard.runner.text_tools import find_text_tool_calls

TOOLS = ("list_files", "read_file", "write_file", "transfer_to_writer")


def calls_of(text: str) -> list[tuple[str, dict]]:
    calls, _ = find_text_tool_calls(text, TOOLS)
    return [(c.name, json.loads(c.arguments)) for c in calls]


# Qwen2.5-0.5B-Instruct on a chatml template without tool support: a Hermes block.
QWEN_HERMES = (
    "<tool_call>\n"
    '{"name": "write_file", "arguments": {"path": "notes.md", "content": "# Notes\\n- one"}}\n'
    "</tool_call>"
)
# Qwen2.5 making two calls in one answer, with a sentence before them.
QWEN_PARALLEL = (
    "I'll look at the folder and read the plan.\n"
    '<tool_call>\n{"name": "list_files", "arguments": {"path": "."}}\n</tool_call>\n'
    '<tool_call>\n{"name": "read_file", "arguments": {"path": "plan.md"}}\n</tool_call>'
)
# SmolLM2-360M-Instruct: its training format puts a list of calls in one block.
SMOLLM2_LIST = '<tool_call>[{"name": "list_files", "arguments": {"path": "docs"}}]</tool_call>'
# SmolLM2-135M-Instruct stopping at <|im_end|> before the closing tag.
SMOLLM2_UNCLOSED = '<tool_call>\n{"name": "read_file", "arguments": {"path": "README.md"}}'
# Llama-3.2-1B-Instruct: the whole message is the call, with "parameters".
LLAMA_BARE = '{"name": "list_files", "parameters": {"path": "."}}'
# Qwen2.5-0.5B answering with the call in a code fence.
QWEN_FENCED = '```json\n{"name": "read_file", "arguments": {"path": "a.txt"}}\n```'
# Arguments as a JSON string, as the OpenAI wire format has them.
STRING_ARGUMENTS = '{"name": "read_file", "arguments": "{\\"path\\": \\"a.txt\\"}"}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (QWEN_HERMES, [("write_file", {"path": "notes.md", "content": "# Notes\n- one"})]),
        (QWEN_PARALLEL, [("list_files", {"path": "."}), ("read_file", {"path": "plan.md"})]),
        (SMOLLM2_LIST, [("list_files", {"path": "docs"})]),
        (SMOLLM2_UNCLOSED, [("read_file", {"path": "README.md"})]),
        (LLAMA_BARE, [("list_files", {"path": "."})]),
        (QWEN_FENCED, [("read_file", {"path": "a.txt"})]),
        (STRING_ARGUMENTS, [("read_file", {"path": "a.txt"})]),
        ('{"name": "transfer_to_writer", "arguments": {}}', [("transfer_to_writer", {})]),
        ('{"name": "list_files"}', [("list_files", {})]),
    ],
)
def test_written_calls_become_real_calls(text: str, expected: list) -> None:
    assert calls_of(text) == expected


def test_the_text_around_hermes_blocks_is_kept_and_ids_are_distinct() -> None:
    calls, rest = find_text_tool_calls(QWEN_PARALLEL, TOOLS, id_prefix="call_text_3")
    assert rest == "I'll look at the folder and read the plan."
    assert [c.id for c in calls] == ["call_text_3_0", "call_text_3_1"]


@pytest.mark.parametrize(
    "text",
    [
        # Qwen2.5-0.5B writing a Python dict, not JSON.
        "<tool_call>\n{'name': 'list_files', 'arguments': {'path': '.'}}\n</tool_call>",
        # SmolLM2-135M cut off inside the arguments.
        '<tool_call>\n{"name": "write_file", "arguments": {"path": "a.txt", "content": "hel',
        # A tool the agent was not given (SmolLM2 loves get_weather).
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</tool_call>',
        # A list with one call of ours and one not: all or nothing.
        '[{"name": "list_files", "arguments": {}}, {"name": "rm_rf", "arguments": {}}]',
        # The call quoted in prose is an explanation, not a call.
        'You could call {"name": "list_files", "arguments": {"path": "."}} to see the files.',
        # Data that happens to have a name.
        '{"name": "write_file", "description": "Writes a file", "parameters": {}}',
        # Arguments that are not an object.
        '{"name": "read_file", "arguments": ["a.txt"]}',
        '{"name": "read_file", "arguments": "path=a.txt"}',
        # Plain answers.
        "The files are: a.txt, b.txt.",
        "",
    ],
)
def test_anything_else_stays_text(text: str) -> None:
    calls, rest = find_text_tool_calls(text, TOOLS)
    assert calls == [] and rest == text


def test_a_bad_block_stays_in_the_text_beside_a_good_one() -> None:
    text = (
        '<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>\n'
        '<tool_call>{"name": "list_files", "arguments": {}}</tool_call>'
    )
    calls, rest = find_text_tool_calls(text, TOOLS)
    assert [c.name for c in calls] == ["list_files"]
    assert rest == '<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>'
