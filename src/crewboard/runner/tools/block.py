"""Tool ``block``: stop the job and ask a human for help, with a reason. The
run ends ``blocked`` once the current step's tool calls are done."""

from __future__ import annotations

from typing import Any

from crewboard.runner.tools.base import Tool, ToolContext, ToolError, arg_str, params


def block(args: dict[str, Any], ctx: ToolContext) -> str:
    reason = arg_str(args, "reason").strip()
    if not reason:
        raise ToolError("say why the job is blocked: 'reason' is empty")
    if ctx.block_reason is None:
        ctx.block_reason = reason
    return f"the job is blocked: {reason}"


TOOL = Tool(
    name="block",
    description=(
        "Stop this job and hand it to a human when you cannot go on (missing input, a "
        "decision only they can make). Say exactly what you need in 'reason'."
    ),
    parameters=params(["reason"], reason={"type": "string", "description": "What you need"}),
    run=block,
)
