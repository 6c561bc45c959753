"""The offline model, ``offline:scripted``: crewboard's built-in stand-in for an
LLM. It needs no network and no key, is deterministic, and says plainly what it
is. It streams the same OpenAI ``chat.completion.chunk`` dicts as a real
provider (text split across chunks, tool calls whose arguments arrive in
pieces, parallel calls, usage, finish reasons), and the runner assembles them
with the same code; only the transport differs.

Its behaviour is scripted by directives, each on a line of its own in the
latest user message (the chat message, or the job's prompt):

``/tool NAME {json}``
    Call tool NAME with these JSON arguments (``{}`` if omitted). Consecutive
    ``/tool`` lines are parallel calls made in one step.
``/handoff AGENT``
    Hand off to preset AGENT (calls ``transfer_to_AGENT``). The directives
    after it are carried out by AGENT.
``/artifact NAME``
    Save the lines that follow it, up to the next directive, as the artifact
    file NAME (calls ``save_artifact``).
``/block REASON``
    Block the job with REASON (calls ``block``); the run ends ``blocked``.
``/fail MESSAGE``
    The provider fails with MESSAGE; the run ends in an ``error``.
``/sleep SECONDS``
    Wait SECONDS before streaming the next step (a slow model: for timeouts
    and cancelling).

Each directive, or run of ``/tool`` lines, is one model step, carried out in
order; after the last one the model answers in text and the run ends. With no
directives it answers at once, in one step without tools: it says it is the
offline model, quotes what it was asked (so a job's parent results show up in
its answer), and lists the tool results it saw. A ``/tool`` line is called
even when the agent was not given that tool (the run reports the refusal back
to it like any other tool error). A ``/handoff``, ``/artifact`` or ``/block``
the agent cannot carry out (the request offers no such tool) is not called:
the model says so in the transcript, naming the shipped presets that could,
and goes on with the next directive. Lines that only look like directives
(an unknown ``/word``) are plain text.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

from crewboard.runner.providers import ProviderError

MODEL_NAME = "scripted"
INTRO = "[offline model] I am crewboard's built-in offline model: no network, no LLM, a script."

_DIRECTIVE = re.compile(r"^/(tool|handoff|artifact|block|fail|sleep)(?:\s+(.*))?$")
_TEXT_CHUNKS = 4
_ARG_PIECE = 12
# The ids of this model's tool calls say which step of the script made them.
_CALL_ID = re.compile(r"^call_(\d+)_\d+$")
_HANDOFF = "transfer_to_"


class Step:
    """One scripted model step: tool calls (name, JSON arguments), a failure, a
    pause. ``directive`` is the line of a step whose tool the agent may lack
    (``/handoff``, ``/artifact``, ``/block``); such a step is skipped, with a
    word why, when the request does not offer that tool."""

    def __init__(
        self,
        calls: list[tuple[str, str]] | None = None,
        fail: str | None = None,
        directive: str | None = None,
    ) -> None:
        self.calls = calls or []
        self.fail = fail
        self.directive = directive
        self.sleep_s = 0.0


def parse_directives(text: str) -> tuple[list[Step], list[str]]:
    """Split a user message into the steps its directives script and the lines
    that are plain text (what the user asked)."""
    steps: list[Step] = []
    plain: list[str] = []
    sleep_s = 0.0
    artifact: tuple[str, list[str]] | None = None
    grouping_tools = False

    def add(step: Step) -> None:
        nonlocal sleep_s
        step.sleep_s, sleep_s = sleep_s, 0.0
        steps.append(step)

    def close_artifact() -> None:
        nonlocal artifact
        if artifact is not None:
            name, lines = artifact
            content = json.dumps({"name": name, "content": "\n".join(lines)})
            add(Step(calls=[("save_artifact", content)], directive=f"/artifact {name}"))
            artifact = None

    for line in text.splitlines():
        match = _DIRECTIVE.match(line.strip())
        if match is None:
            if artifact is not None:
                artifact[1].append(line)
            else:
                plain.append(line)
                grouping_tools = False
            continue
        close_artifact()
        verb, rest = match.group(1), (match.group(2) or "").strip()
        if verb == "tool":
            name, _, arguments = rest.partition(" ")
            call = (name, arguments.strip() or "{}")
            if grouping_tools and not sleep_s:
                steps[-1].calls.append(call)
            else:
                add(Step(calls=[call]))
            grouping_tools = True
            continue
        grouping_tools = False
        if verb == "handoff":
            add(Step(calls=[(_HANDOFF + rest, "{}")], directive=f"/handoff {rest}"))
        elif verb == "artifact":
            artifact = (rest, [])
        elif verb == "block":
            reason = json.dumps({"reason": rest or "blocked by the script"})
            add(Step(calls=[("block", reason)], directive="/block"))
        elif verb == "fail":
            add(Step(fail=rest or "scripted failure"))
        elif verb == "sleep":
            try:
                sleep_s += max(0.0, float(rest))
            except ValueError:
                plain.append(line)
    close_artifact()
    if sleep_s:
        add(Step())  # a trailing /sleep slows the final answer
    return steps, plain


def _shipped_holders(tool: str) -> str:
    """The shipped presets that have ``tool`` (or, for ``handoffs``, any
    handoff), as "a, b or c". Read only when a directive cannot be carried
    out, so the offline path does not load the presets otherwise."""
    from crewboard.agents import load_presets

    presets, _ = load_presets()
    if tool == "handoffs":
        ids = [p.id for p in presets.values() if p.handoffs]
    else:
        ids = [p.id for p in presets.values() if tool in p.tools]
    if not ids:
        return "none of the shipped presets has it"
    if len(ids) == 1:
        return "such as " + ids[0]
    return "such as " + ", ".join(ids[:-1]) + " or " + ids[-1]


def why_not(step: Step, offered: set[str]) -> str | None:
    """Why the agent cannot carry out ``step`` with the tools it is offered,
    and what would work; None when it can (or the step is not one it may lack)."""
    if step.directive is None or not step.calls or step.calls[0][0] in offered:
        return None
    needed = step.calls[0][0]
    line = f"`{step.directive}` was not carried out: "
    if needed.startswith(_HANDOFF):
        targets = sorted(name[len(_HANDOFF) :] for name in offered if name.startswith(_HANDOFF))
        if targets:
            return line + f"this agent can hand off only to {', '.join(targets)}."
        return line + f"`/handoff` needs a preset with handoffs, {_shipped_holders('handoffs')}."
    verb = step.directive.split()[0]
    extra = " (in a job every agent has it)" if needed == "block" else ""
    return (
        line + f"`{verb}` needs a preset with the {needed} tool, {_shipped_holders(needed)}{extra}."
    )


def _next_step(later: list[dict[str, Any]]) -> int:
    """The step of the script to carry out now: the one after the step the
    last answer made (its call ids name it: steps may have been skipped), or
    the number of answers so far when they name none."""
    answers = [m for m in later if m.get("role") == "assistant"]
    if not answers:
        return 0
    for call in answers[-1].get("tool_calls") or []:
        match = _CALL_ID.match(str(call.get("id", "")) if isinstance(call, dict) else "")
        if match:
            return int(match.group(1)) + 1
    return len(answers)


def _offered(request: dict[str, Any]) -> set[str]:
    names = set()
    for tool in request.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return names


def _split(text: str, parts: int) -> list[str]:
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _tokens(text: str) -> int:
    return len(text) // 4 + 1


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else ""


class OfflineTransport:
    """Answers a Chat Completions request by following the script in its latest
    user message; the step is the number of assistant turns since then."""

    def __init__(self, sleep: Any = time.sleep) -> None:
        self._sleep = sleep

    def close(self) -> None:
        pass

    def stream(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        messages: list[dict[str, Any]] = request.get("messages", [])
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        prompt = _content(messages[last_user]) if last_user >= 0 else ""
        later = messages[last_user + 1 :]
        step_no = _next_step(later)
        steps, plain = parse_directives(prompt)
        offered = _offered(request)
        notes: list[str] = []
        sleep_s = 0.0
        while step_no < len(steps) and (note := why_not(steps[step_no], offered)) is not None:
            notes.append(note)
            sleep_s += steps[step_no].sleep_s
            step_no += 1
        step = steps[step_no] if step_no < len(steps) else Step()
        sleep_s += step.sleep_s
        if sleep_s:
            self._sleep(sleep_s)
        if step.fail is not None:
            raise ProviderError(f"offline model: {step.fail}")
        prompt_tokens = sum(_tokens(_content(m)) for m in messages)
        if step.calls:
            said = "\n\n".join(notes) + "\n\n" if notes else ""
            chunks = [self._chunk({"content": piece}) for piece in _split(said, 1) if piece]
            chunks += self._tool_chunks(step.calls, step_no)
            completion = sum(_tokens(a) for _, a in step.calls) + (_tokens(said) if said else 0)
            finish = "tool_calls"
        else:
            tool_messages = [m for m in later if m.get("role") == "tool"]
            answer = self._answer(plain, tool_messages, notes)
            chunks = [self._chunk({"content": piece}) for piece in _split(answer, _TEXT_CHUNKS)]
            completion = _tokens(answer)
            finish = "stop"
        yield self._chunk({"role": "assistant", "content": ""})
        yield from chunks
        yield self._chunk({}, finish_reason=finish)
        yield {
            "id": "offline",
            "object": "chat.completion.chunk",
            "model": MODEL_NAME,
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            },
        }

    @staticmethod
    def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": "offline",
            "object": "chat.completion.chunk",
            "model": MODEL_NAME,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def _tool_chunks(self, calls: list[tuple[str, str]], step_no: int) -> Iterator[dict[str, Any]]:
        for index, (name, arguments) in enumerate(calls):
            head = {
                "index": index,
                "id": f"call_{step_no}_{index}",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            yield self._chunk({"tool_calls": [head]})
            for start in range(0, len(arguments), _ARG_PIECE):
                piece = arguments[start : start + _ARG_PIECE]
                yield self._chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                )

    @staticmethod
    def _answer(plain: list[str], tool_messages: list[dict[str, Any]], notes: list[str]) -> str:
        asked = "\n".join(plain).strip()
        parts = [INTRO, *notes]
        if asked:
            quoted = "\n".join("> " + line for line in asked.splitlines())
            parts.append("You asked:\n" + quoted)
        else:
            parts.append("You asked me nothing in words.")
        if tool_messages:
            seen = [f"- {_content(m)[:300]}" for m in tool_messages]
            parts.append(f"Tool results I saw ({len(seen)}):\n" + "\n".join(seen))
        return "\n\n".join(parts)
