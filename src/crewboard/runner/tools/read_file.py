"""Tool ``read_file``: read a text file from the run's workspace."""

from __future__ import annotations

import os
import stat
from typing import Any

from crewboard.runner.tools.base import Tool, ToolContext, ToolError, arg_str, params
from crewboard.runner.tools.workspace import confine


def read_file(args: dict[str, Any], ctx: ToolContext) -> str:
    relative = arg_str(args, "path")
    path = confine(ctx.workspace, relative)
    limit = ctx.limits.tool_output_bytes
    try:
        # O_NONBLOCK: a FIFO planted in the workspace must not hang the call.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise ToolError(f"{relative!r} does not exist") from exc
    except OSError as exc:
        raise ToolError(f"cannot open {relative!r}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ToolError(f"{relative!r} is not a regular file")
        data = os.read(fd, limit)
    finally:
        os.close(fd)
    size = st.st_size
    text = data.decode(errors="replace")
    if size > limit:
        text += f"\n[file cut: {size} bytes, the first {limit} shown]"
    return text


TOOL = Tool(
    name="read_file",
    description="Read a text file from your workspace. Paths are relative to the workspace.",
    parameters=params(
        ["path"], path={"type": "string", "description": "Relative path of the file"}
    ),
    run=read_file,
)
