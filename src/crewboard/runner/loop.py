"""The agent loop: call the model, run the tool calls it asks for, feed the
results back, and repeat until it answers without tools.

One step is one streamed model call. Its text deltas are logged as they
arrive; its tool calls run concurrently in threads, each logged as
``agent_tool_start``/``agent_tool_end``, and their results (errors included)
go back to the model as ``tool`` messages. Handoffs are tools named
``transfer_to_<agent>``: calling one makes that agent the active one (its
instructions become the system prompt) for the next step. The loop ends with
exactly one terminal record: ``final_result``, ``blocked`` (the block tool) or
``error`` (the provider failed, the model hit its token limit, or the step
limit was reached).

Each request asks for at most ``max_tokens`` (the active preset's, else the
provider's, else ``DEFAULT_MAX_TOKENS``) and, with tools, ``tool_choice:
"auto"``. On a provider with a concurrency limit a request first takes one of
its slots (:mod:`crewboard.runner.slots`), logging ``waiting`` records while
it queues; the HTTP timeouts start only once it has one. An answer the server
interrupts is asked for once more (a ``retry`` record). Usage a server does
not report is ``null`` in the ``final_result``, never 0.

What a run writes is capped (:mod:`crewboard.runner.output`): a step's text
is logged up to ``limits.maxResultBytes`` and saved whole as an artifact past
it, a final result keeps its beginning and a note naming the artifact that
holds it all, and a log past ``limits.maxLogBytes`` ends the run in an error.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from crewboard.runner.output import CappedLog, LogFull, StepText, head, result_note
from crewboard.runner.providers import ProviderError, StreamInterrupted, Transport
from crewboard.runner.session_log import RunLog, scrub
from crewboard.runner.spec import AgentDef, RunnerSpec
from crewboard.runner.stream import ModelTurn, ToolCall, assemble
from crewboard.runner.tools.base import ToolContext, ToolError, clip
from crewboard.runspec import LEASE_LAPSED_EXIT
from crewboard.toolnames import granted_tools

if TYPE_CHECKING:
    from crewboard.runner.mcp import McpHub
    from crewboard.runner.settle import Acks
    from crewboard.runner.slots import SlotPool

HANDOFF_PREFIX = "transfer_to_"
# Enough for a page-long answer; a small model that loops stops within a
# minute instead of streaming until its context is full.
DEFAULT_MAX_TOKENS = 2048
MAX_PARALLEL_TOOLS = 8
# A tool that overruns its own limit by this much is abandoned (its thread is
# left behind; the shell tool kills its process group at its own timeout).
TOOL_GRACE_S = 5.0

EXIT_OK, EXIT_ERROR, EXIT_BLOCKED = 0, 1, 3
# How long a result waits for the board's acknowledgement when the run has no
# lease to bound the wait.
UNACKED_WAIT_S = 60.0
# Where a final result over the cap is saved whole, when the job names no
# deliverable of its own.
RESULT_ARTIFACT = "result.md"


class AgentLoop:
    def __init__(
        self,
        spec: RunnerSpec,
        log: RunLog,
        transport: Transport,
        ctx: ToolContext,
        acks: Acks | None = None,
    ) -> None:
        """``acks``: where a run that settles its result with the board
        (``spec.ship_ack``) hears what the board holds."""
        self.spec = spec
        self.acks = acks
        self.log = CappedLog(log, spec.log_path, spec.limits.max_log_bytes)
        self._step_text: StepText | None = None
        # The deliverable this loop wrote from the final answer, if any.
        self._written_from_answer: str | None = None
        self.transport = transport
        self.ctx = ctx
        self.agent = spec.agents[spec.agent_id]
        self.history: list[dict[str, Any]] = [dict(m) for m in spec.messages]
        self.history.append({"role": "user", "content": spec.prompt})
        self.usage = {"requests": 0, "inputTokens": 0, "outputTokens": 0, "totalTokens": 0}
        self._usage_reported = True
        self._slots = threading.BoundedSemaphore(MAX_PARALLEL_TOOLS)
        self._model_slots: SlotPool | None = None
        # The run's MCP servers, started in run(); None when no preset names one.
        self.mcp: McpHub | None = None
        model = spec.model
        if model.provider != "offline" and model.max_concurrency and model.state_dir:
            from crewboard.runner.slots import SlotPool

            self._model_slots = SlotPool(model.state_dir, model.max_concurrency)

    def run(self) -> int:
        """Run to a terminal record; returns the runner's exit code."""
        if self.spec.mcp:
            from crewboard.runner.mcp import McpHub, ServerFailed

            self.mcp = McpHub(self.spec.mcp, self.ctx)
            try:
                self.mcp.start()
            except ServerFailed as exc:
                self.log.finish("error", message=str(exc), agentName=self.agent.id)
                return EXIT_ERROR
        try:
            return self._run_steps()
        finally:
            if self.mcp is not None:
                self.mcp.close()

    def _run_steps(self) -> int:
        self.log.append("agent_start", agentName=self.agent.id)
        try:
            for step in range(1, self.spec.limits.max_steps + 1):
                turn = self._call_model()
                if turn.finish_reason == "length":
                    return self._hit_token_limit()
                if not turn.tool_calls:
                    return self._finish(turn.text)
                cut = self._step_text is not None and self._step_text.cut
                if cut and self._save_whole(f"step-{step}.md", turn.text) is None:
                    return EXIT_ERROR
                self.history.append(turn.message())
                handoff = self._run_calls(turn.tool_calls)
                if self.ctx.block_reason is not None:
                    self.log.append("agent_end", agentName=self.agent.id)
                    self.log.finish(
                        "blocked", reason=self.ctx.block_reason, agentName=self.agent.id
                    )
                    return EXIT_BLOCKED
                if handoff is not None:
                    self._switch_to(handoff)
            self.log.finish(
                "error",
                message=f"the agent did not finish within {self.spec.limits.max_steps} steps "
                "(limits.maxSteps)",
                usage=self._usage(),
            )
            return EXIT_ERROR
        except ProviderError as exc:
            self.log.finish(
                "error",
                message=str(exc),
                agentName=self.agent.id,
                usage=self._usage(),
                providerError=True,
            )
            return EXIT_ERROR
        except LogFull as exc:
            self.log.finish("error", message=str(exc), agentName=self.agent.id)
            return EXIT_ERROR

    @property
    def max_tokens(self) -> int:
        return self.agent.max_tokens or self.spec.model.max_tokens or DEFAULT_MAX_TOKENS

    def _call_model(self) -> ModelTurn:
        request: dict[str, Any] = {
            "model": self.spec.model.name,
            "messages": [{"role": "system", "content": self._system_prompt()}, *self.history],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        # OpenAI's own API has renamed the field (its reasoning models refuse
        # the old one); every other server knows max_tokens.
        if self.spec.model.provider == "openai":
            request["max_completion_tokens"] = self.max_tokens
        else:
            request["max_tokens"] = self.max_tokens
        tools = self._tool_schemas()
        if tools:
            request["tools"] = tools
            # Without it llama-cpp-python's chatml-function-calling drops the tools.
            request["tool_choice"] = "auto"
        agent_name = self.agent.id
        max_bytes = self.spec.limits.max_result_bytes

        with self._model_slot():
            # Counted as it is sent: a request the provider failed is one too.
            self.usage["requests"] += 1
            try:
                self._step_text = on_text = StepText(self.log, agent_name, max_bytes)
                turn = assemble(self.transport.stream(request), on_text)
            except StreamInterrupted:
                self.log.append(
                    "retry",
                    agentName=agent_name,
                    reason="the model server interrupted the answer; asking again",
                )
                self.usage["requests"] += 1
                try:
                    self._step_text = on_text = StepText(self.log, agent_name, max_bytes)
                    turn = assemble(self.transport.stream(request), on_text)
                except StreamInterrupted as exc:
                    raise ProviderError(
                        "the model server interrupted the answer, twice (it ended the stream "
                        "without finishing; a server that serves one request at a time does "
                        "this when another arrives: lower the provider's max_concurrency)"
                    ) from exc
        if turn.usage is None:
            self._usage_reported = False
        else:
            for ours, theirs in (
                ("inputTokens", "prompt_tokens"),
                ("outputTokens", "completion_tokens"),
                ("totalTokens", "total_tokens"),
            ):
                self.usage[ours] += turn.usage.get(theirs, 0)
        if self.spec.model.text_tool_calls and not turn.tool_calls and turn.text:
            self._take_text_tool_calls(turn, [t["function"]["name"] for t in tools])
        return turn

    def _model_slot(self) -> AbstractContextManager[None]:
        """Hold one of the provider's slots for one request (a no-op when the
        provider has no concurrency limit), logging the wait."""
        if self._model_slots is None:
            return nullcontext()
        agent_name = self.agent.id

        def on_wait(ahead: int) -> None:
            self.log.append(
                "waiting",
                agentName=agent_name,
                reason=f"waiting for the model: {ahead} ahead",
                ahead=ahead,
            )

        return self._model_slots.hold(on_wait)

    def _take_text_tool_calls(self, turn: ModelTurn, tools: list[str]) -> None:
        from crewboard.runner.text_tools import find_text_tool_calls

        calls, rest = find_text_tool_calls(
            turn.text, tools, id_prefix=f"call_text_{self.usage['requests']}"
        )
        if calls:
            turn.tool_calls, turn.text = calls, rest

    def _usage(self) -> dict[str, Any]:
        """What the run asked of its provider so far, for its terminal
        record (the reaping process counts it: crewboard.metrics)."""
        usage: dict[str, Any] = dict(self.usage)
        if not self._usage_reported:
            # Not reported is not zero.
            usage.update(inputTokens=None, outputTokens=None, totalTokens=None)
        return usage

    def _hit_token_limit(self) -> int:
        self.log.finish(
            "error",
            usage=self._usage(),
            message=f"the model hit its token limit (max_tokens={self.max_tokens}) before it "
            "finished; raise max_tokens in the agent preset or the provider's table",
            agentName=self.agent.id,
            maxTokens=self.max_tokens,
        )
        return EXIT_ERROR

    def _system_prompt(self) -> str:
        prompt = self.agent.instructions
        if self.spec.artifact:
            prompt += (
                f"\n\nThis job's deliverable is the file {self.spec.artifact!r}. Save it with "
                "save_artifact if you can; otherwise your final answer is saved under that name."
            )
        return prompt

    @property
    def tools(self) -> tuple[str, ...]:
        """The active agent's tools in this run: its preset's, and in a job
        the ones every job agent has (``block``)."""
        return granted_tools(self.agent.tools, self.spec.kind)

    def _tool_schemas(self) -> list[dict[str, Any]]:
        from crewboard.runner.tools import TOOL_NAMES, load_tool

        schemas = []
        for name in self.tools:
            if name not in TOOL_NAMES or (name == "shell" and not self.spec.limits.allow_shell):
                continue
            schemas.append(load_tool(name).schema())
        if self.mcp is not None:
            schemas += self.mcp.schemas(self.agent)
        for target_id in self.agent.handoffs:
            target = self.spec.agents[target_id]
            schemas.append(
                {
                    "type": "function",
                    "function": {
                        "name": HANDOFF_PREFIX + target_id,
                        "description": f"Hand the conversation over to {target.name}. "
                        + target.description,
                        "parameters": {
                            "type": "object",
                            "properties": {},
                            "additionalProperties": False,
                        },
                    },
                }
            )
        return schemas

    def _run_calls(self, calls: list[ToolCall]) -> AgentDef | None:
        """Run one step's tool calls; append their results to the history in
        call order. Returns the agent to hand off to, if one was asked for."""
        results: dict[str, str] = {}
        handoff: AgentDef | None = None
        work: list[ToolCall] = []
        for call in calls:
            if call.name.startswith(HANDOFF_PREFIX):
                target_id = call.name[len(HANDOFF_PREFIX) :]
                if target_id not in self.agent.handoffs:
                    can = ", ".join(self.agent.handoffs) or "nobody"
                    results[call.id] = (
                        f"error: you cannot hand off to {target_id!r} (you can: {can})"
                    )
                elif handoff is not None:
                    results[call.id] = "error: only one handoff per step; this one was ignored"
                else:
                    handoff = self.spec.agents[target_id]
                    results[call.id] = json.dumps({"assistant": handoff.id})
                continue
            work.append(call)
        for call in work:
            self.log.append(
                "agent_tool_start",
                agentName=self.agent.id,
                toolName=call.name,
                toolArgumentsStr=call.arguments,
                callId=call.id,
            )
        results.update(self._execute(work))
        for call in calls:
            self.history.append(
                {"role": "tool", "tool_call_id": call.id, "content": results[call.id]}
            )
        return handoff

    def _execute(self, calls: list[ToolCall]) -> dict[str, str]:
        """Run calls concurrently, one daemon thread each (at most
        ``MAX_PARALLEL_TOOLS`` at a time), logging each end as it comes."""
        finished: queue.SimpleQueue[tuple[ToolCall, str, bool]] = queue.SimpleQueue()

        def work(call: ToolCall) -> None:
            with self._slots:
                finished.put((call, *self._call_tool(call)))

        for call in calls:
            threading.Thread(
                target=work, args=(call,), name=f"tool {call.name}", daemon=True
            ).start()
        results: dict[str, str] = {}
        limit = max((self._timeout_s(call) for call in calls), default=0.0)
        deadline = time.monotonic() + limit + TOOL_GRACE_S
        for _ in calls:
            try:
                call, text, failed = finished.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self._end_call(call, results, text, failed)
        for call in calls:
            if call.id not in results:
                text = f"error: the tool did not finish within {self._timeout_s(call):g} s"
                self._end_call(call, results, text, True)
        return results

    def _timeout_s(self, call: ToolCall) -> float:
        """How long a call may take: an MCP server's own ``call_timeout_s``,
        else the tools' limit."""
        mcp_timeout = self.mcp.timeout_s(call.name) if self.mcp is not None else None
        return mcp_timeout if mcp_timeout is not None else self.spec.limits.tool_timeout_s

    def _end_call(self, call: ToolCall, results: dict[str, str], text: str, failed: bool) -> None:
        results[call.id] = text
        fields: dict[str, Any] = {"isError": True} if failed else {}
        self.log.append(
            "agent_tool_end",
            agentName=self.agent.id,
            toolName=call.name,
            result=text,
            callId=call.id,
            **fields,
        )

    def _call_tool(self, call: ToolCall) -> tuple[str, bool]:
        """One tool call, never raising: refusals and failures become the
        result the model reads."""
        from crewboard.runner.tools import TOOL_NAMES, load_tool

        mcp = self.mcp if self.mcp is not None and self.mcp.owns(call.name) else None
        max_bytes = self.spec.limits.tool_output_bytes
        try:
            if mcp is None and (call.name not in self.tools or call.name not in TOOL_NAMES):
                have = ", ".join(self.tools) or "none"
                raise ToolError(f"{call.name!r} is not one of your tools (you have: {have})")
            try:
                args = json.loads(call.arguments or "{}")
            except ValueError as exc:
                raise ToolError(
                    f"the arguments are not valid JSON ({exc}): {call.arguments[:200]!r}"
                ) from exc
            if not isinstance(args, dict):
                raise ToolError("the arguments must be a JSON object")
            if mcp is not None:
                max_bytes = mcp.output_bytes(call.name) or max_bytes
                text, failed = mcp.call(self.agent, call.name, args)
            else:
                text, failed = load_tool(call.name).run(args, self.ctx), False
        except ToolError as exc:
            text, failed = f"error: {exc}", True
        except Exception as exc:
            text, failed = f"error: {call.name} failed: {type(exc).__name__}: {exc}", True
        return clip(scrub(text, self.ctx.secrets), max_bytes), failed

    def _switch_to(self, target: AgentDef) -> None:
        self.log.append("handoff", agentName=self.agent.id, toAgentName=target.id)
        self.log.append("agent_end", agentName=self.agent.id)
        self.agent = target
        self.log.append("agent_start", agentName=target.id)

    def _finish(self, text: str) -> int:
        self.log.append("agent_end", agentName=self.agent.id)
        fields: dict[str, Any] = {"text": text, "agentName": self.agent.id, "usage": self._usage()}
        if self.spec.artifact and self.spec.artifact not in self.ctx.saved_artifacts:
            from crewboard.runner.tools.save_artifact import write_artifact

            try:
                write_artifact(self.spec.artifact_dir, self.spec.artifact, text)
                self.ctx.saved_artifacts.append(self.spec.artifact)
                self._written_from_answer = self.spec.artifact
            except (ToolError, OSError) as exc:
                self.log.finish(
                    "error", message=f"cannot save the artifact {self.spec.artifact!r}: {exc}"
                )
                return EXIT_ERROR
        max_bytes = self.spec.limits.max_result_bytes
        full_bytes = len(text.encode())
        if full_bytes > max_bytes:
            # The deliverable written just above holds the whole answer already.
            whole = self.spec.artifact if self.spec.artifact == self._written_from_answer else None
            if whole is None:
                whole = self._save_whole(RESULT_ARTIFACT, text, first=not self.spec.artifact)
            if whole is None:
                return EXIT_ERROR
            fields.update(
                text=head(text, max_bytes) + result_note(full_bytes, max_bytes, whole),
                truncated=True,
                fullChars=len(text),
                fullArtifact=whole,
            )
        if self.ctx.saved_artifacts:
            fields["artifacts"] = list(self.ctx.saved_artifacts)
        if self.acks is not None and not self._settled(self.acks, fields):
            return LEASE_LAPSED_EXIT
        self.log.finish("final_result", **fields)
        return EXIT_OK

    def _settled(self, acks: Acks, fields: dict[str, Any]) -> bool:
        """Write the result as pending and wait until the board holds it
        (``runner/settle.py``); False after ending the run interrupted
        because no acknowledgement came within a lease."""
        from crewboard.runner.settle import UNACKED
        from crewboard.sessionlog import RESULT_PENDING

        pending = self.log.append_pending(RESULT_PENDING, **fields)
        if pending is None:
            return True  # already ended (stopped meanwhile): finish() is a no-op
        lease_s = self.spec.lease.seconds if self.spec.lease else UNACKED_WAIT_S
        if acks.wait_for(int(pending["seq"]), lease_s):
            return True
        self.log.finish("error", message=UNACKED, interrupted=True)
        return False

    def _save_whole(self, name: str, text: str, *, first: bool = False) -> str | None:
        """Save a text over the cap whole as an artifact (under a name of its
        own if the agent saved one by that name); its name, or None after
        ending the run in an error because it could not be written."""
        from crewboard.runner.tools.save_artifact import write_artifact

        stem, dot, suffix = name.rpartition(".")
        n = 1
        while name in self.ctx.saved_artifacts:
            n += 1
            name = f"{stem}-{n}{dot}{suffix}"
        try:
            write_artifact(self.spec.artifact_dir, name, text)
        except (ToolError, OSError) as exc:
            self.log.finish("error", message=f"cannot save the artifact {name!r}: {exc}")
            return None
        if first:
            self.ctx.saved_artifacts.insert(0, name)
        else:
            self.ctx.saved_artifacts.append(name)
        return name
