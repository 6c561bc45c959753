"""Tool ``write_file``: create, replace or append to a file in the run's workspace."""

from __future__ import annotations

import os
import stat
from typing import Any

from crewboard.runner.tools.base import Tool, ToolContext, ToolError, arg_bool, arg_str, params
from crewboard.runner.tools.workspace import confine, shown


def write_file(args: dict[str, Any], ctx: ToolContext) -> str:
    relative = arg_str(args, "path")
    content = arg_str(args, "content")
    append = arg_bool(args, "append", False)
    path = confine(ctx.workspace, relative)
    if path.is_dir():
        raise ToolError(f"{relative!r} is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Check again once the folders exist: a symlinked parent planted meanwhile
    # (by a shell call running in parallel) must not lead the write outside.
    confine(ctx.workspace, shown(ctx.workspace, path.parent))
    # O_NONBLOCK: a FIFO planted in the workspace must not hang the call.
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
    data = content.encode()
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise ToolError(f"cannot write {relative!r}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ToolError(f"{relative!r} is not a regular file")
        os.set_blocking(fd, True)
        if append:
            f.seek(0, os.SEEK_END)
        else:
            f.truncate(0)
        f.write(data)
    verb = "appended" if append else "wrote"
    return f"{verb} {len(data)} bytes to {shown(ctx.workspace, path)}"


TOOL = Tool(
    name="write_file",
    description=(
        "Write a text file in your workspace (relative path), creating folders as needed. "
        "Replaces the file unless append is true."
    ),
    parameters=params(
        ["path", "content"],
        path={"type": "string", "description": "Relative path of the file"},
        content={"type": "string", "description": "The text to write"},
        append={"type": "boolean", "description": "Add to the end instead of replacing"},
    ),
    run=write_file,
)
