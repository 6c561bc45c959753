"""Tool calls a model wrote as text instead of sending them as tool calls.

Small local models often answer a tools request with the call spelled out in
the message: the whole message one JSON object ``{"name": ..., "arguments":
{...}}`` (Llama 3.x writes ``"parameters"``), or Hermes-style
``<tool_call>{...}</tool_call>`` blocks (Qwen2.5, Hermes; SmolLM2 puts a JSON
list of calls inside one block), the last one sometimes unclosed because the
model stopped at its end-of-turn token.
With ``text_tool_calls = true`` on a provider, :func:`find_text_tool_calls`
turns those into real calls. Only the agent's own tools count: an object or
block naming anything else, or one that is not valid JSON, stays text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

from crewboard.runner.stream import ToolCall

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.S)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def _calls(payload: str, tools: Collection[str], id_prefix: str, first: int) -> list[ToolCall]:
    """The calls a JSON text spells (one object, or a list of them), all
    naming one of ``tools``; none if any part of it is not such a call."""
    try:
        data = json.loads(payload)
    except ValueError:
        return []
    items = data if isinstance(data, list) and data else [data]
    calls = [_call(item, tools, f"{id_prefix}_{first + i}") for i, item in enumerate(items)]
    return [c for c in calls if c is not None] if all(calls) else []


def _call(data: Any, tools: Collection[str], call_id: str) -> ToolCall | None:
    """The call a decoded JSON value is, if it names one of ``tools``."""
    if not isinstance(data, dict) or data.get("name") not in tools:
        return None
    if set(data) - {"name", "arguments", "parameters", "id", "type"}:
        return None  # an object that merely has a "name" is data, not a call
    arguments: Any = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(call_id, data["name"], json.dumps(arguments, ensure_ascii=False))


def find_text_tool_calls(
    text: str, tools: Collection[str], id_prefix: str = "call_text"
) -> tuple[list[ToolCall], str]:
    """The tool calls written in ``text`` and the text left once they are
    taken out; ``([], text)`` when there are none."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    whole = _calls(fenced.group(1) if fenced else stripped, tools, id_prefix, 0)
    if whole:
        return whole, ""
    calls: list[ToolCall] = []
    kept: list[str] = []
    position = 0
    for match in _BLOCK.finditer(text):
        found = _calls(match.group(1), tools, id_prefix, len(calls))
        if not found:
            continue  # not a call of ours: the block stays in the text
        kept.append(text[position : match.start()])
        position = match.end()
        calls += found
    if not calls:
        return [], text
    kept.append(text[position:])
    return calls, "".join(kept).strip()
