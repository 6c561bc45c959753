"""Assembling one streamed model response from OpenAI Chat Completions chunks.

Every provider, the offline one included, hands the loop an iterator of chunk
dicts shaped like OpenAI's ``chat.completion.chunk``; this module turns them
into one :class:`ModelTurn`: the text (reported delta by delta as it arrives),
the tool calls (argument fragments joined by ``index``), the finish reason and
the usage (``None`` when the server did not report it). A chunk that is not
that shape, or a stream that stops before a finish reason, is a
:class:`ProviderError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from crewboard.runner.providers import ProviderError


class ToolCall:
    __slots__ = ("arguments", "id", "name")

    def __init__(self, id: str, name: str, arguments: str) -> None:
        self.id = id
        self.name = name
        self.arguments = arguments

    def __repr__(self) -> str:
        return f"ToolCall({self.id!r}, {self.name!r}, {self.arguments!r})"

    def message(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


class ModelTurn:
    """One assembled model response."""

    def __init__(self) -> None:
        self.text = ""
        self.tool_calls: list[ToolCall] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, int] | None = None

    def message(self) -> dict[str, Any]:
        """The assistant message to put back in the conversation, in the form
        the OpenAI reference gives and strict servers validate: ``content`` is
        always a string ("" beside tool calls, never null: llama-cpp-python
        refuses null with a 500, llama.cpp with a 400)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            message["tool_calls"] = [call.message() for call in self.tool_calls]
        return message


def _malformed(why: str, chunk: Any) -> ProviderError:
    shown = repr(chunk)
    if len(shown) > 200:
        shown = shown[:200] + "…"
    return ProviderError(f"malformed chunk from the model ({why}): {shown}")


def _error_message(error: Any) -> str:
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return str(error)


def assemble(chunks: Iterable[Any], on_text: Callable[[str], None]) -> ModelTurn:
    """Consume a chunk stream into one turn, calling ``on_text`` per text delta."""
    turn = ModelTurn()
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        if not isinstance(chunk, dict):
            raise _malformed("not an object", chunk)
        if chunk.get("error") is not None:
            raise ProviderError(f"the model reported an error: {_error_message(chunk['error'])}")
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            counts = {k: v for k, v in usage.items() if isinstance(v, int)}
            turn.usage = counts or turn.usage
        choices = chunk.get("choices", [])
        if not isinstance(choices, list):
            raise _malformed("choices is not a list", chunk)
        for choice in choices:
            if not isinstance(choice, dict):
                raise _malformed("a choice is not an object", chunk)
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise _malformed("delta is not an object", chunk)
            content = delta.get("content")
            if isinstance(content, str) and content:
                text.append(content)
                on_text(content)
            _add_tool_deltas(calls, delta.get("tool_calls"), chunk)
            if choice.get("finish_reason"):
                turn.finish_reason = str(choice["finish_reason"])
    if turn.finish_reason is None:
        raise ProviderError("the model's stream was cut off before it finished")
    turn.text = "".join(text)
    for index in sorted(calls):
        call = calls[index]
        if not call["name"]:
            raise ProviderError(f"the model sent tool call #{index} without a function name")
        turn.tool_calls.append(
            ToolCall(call["id"] or f"call_{index}", call["name"], "".join(call["arguments"]))
        )
    return turn


def _add_tool_deltas(calls: dict[int, dict[str, Any]], deltas: Any, chunk: Any) -> None:
    if deltas is None:
        return
    if not isinstance(deltas, list):
        raise _malformed("tool_calls is not a list", chunk)
    for position, delta in enumerate(deltas):
        if not isinstance(delta, dict):
            raise _malformed("a tool call delta is not an object", chunk)
        index = delta.get("index", position)
        if not isinstance(index, int):
            raise _malformed("a tool call index is not an integer", chunk)
        call = calls.setdefault(index, {"id": "", "name": "", "arguments": []})
        if isinstance(delta.get("id"), str) and not call["id"]:
            call["id"] = delta["id"]
        function = delta.get("function") or {}
        if not isinstance(function, dict):
            raise _malformed("a tool call's function is not an object", chunk)
        name = function.get("name")
        if isinstance(name, str) and name and name != call["name"]:
            call["name"] += name
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call["arguments"].append(arguments)
        elif arguments is not None:
            raise _malformed("tool call arguments are not a string", chunk)
