"""Tool ``read_file``: read a text file from the run's workspace."""

from __future__ import annotations

import os
from typing import Any

from crewboard.runner.tools import confined
from crewboard.runner.tools.base import Tool, ToolContext, arg_str, params
from crewboard.runner.tools.workspace import parse, refusal, regular_file


def read_file(args: dict[str, Any], ctx: ToolContext) -> str:
    path = parse(arg_str(args, "path"))
    limit = ctx.limits.tool_output_bytes
    try:
        with confined.opened_folder(ctx.workspace, create=True) as root:
            # O_NONBLOCK: a FIFO planted in the workspace must not hang the call.
            fd = confined.open_beneath(root, path.parts, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise refusal(path, exc, "read") from exc
    f, st = regular_file(fd, path, "rb")
    with f:
        data = f.read(limit)
    text = data.decode(errors="replace")
    if st.st_size > limit:
        text += f"\n[file cut: {st.st_size} bytes, the first {limit} shown]"
    return text


TOOL = Tool(
    name="read_file",
    description="Read a text file from your workspace. Paths are relative to the workspace.",
    parameters=params(
        ["path"], path={"type": "string", "description": "Relative path of the file"}
    ),
    run=read_file,
)
