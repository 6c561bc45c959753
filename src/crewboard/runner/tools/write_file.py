"""Tool ``write_file``: create, replace or append to a file in the run's workspace."""

from __future__ import annotations

import os
from typing import Any

from crewboard.runner.tools import confined
from crewboard.runner.tools.base import Tool, ToolContext, ToolError, arg_bool, arg_str, params
from crewboard.runner.tools.workspace import ModelPath, parse, refusal, regular_file


def write_file(args: dict[str, Any], ctx: ToolContext) -> str:
    path = parse(arg_str(args, "path"))
    content = arg_str(args, "content")
    append = arg_bool(args, "append", False)
    if not path.parts:
        raise ToolError(f"{path.text!r} is a directory")
    data = content.encode()
    *folders, name = path.parts
    try:
        with confined.opened_folder(ctx.workspace, create=True) as root:
            folder = confined.make_folders(root, folders)
        try:
            if append:
                _append(folder, name, path, data)
            else:
                # A new file renamed over the old entry: a link planted at the
                # name (to a file outside) is replaced, never written through.
                confined.replace_file(folder, name, data)
        finally:
            os.close(folder)
    except OSError as exc:
        raise refusal(path, exc, "write") from exc
    verb = "appended" if append else "wrote"
    return f"{verb} {len(data)} bytes to {path.shown}"


def _append(folder: int, name: str, path: ModelPath, data: bytes) -> None:
    # O_NONBLOCK: a FIFO planted in the workspace must not hang the call.
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
    f, _ = regular_file(confined.open_beneath(folder, (name,), flags, 0o644), path, "wb")
    with f:
        f.write(data)


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
