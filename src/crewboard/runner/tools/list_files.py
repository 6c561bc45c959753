"""Tool ``list_files``: list a folder of the run's workspace, recursively."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from crewboard.runner.tools.base import Tool, ToolContext, ToolError, arg_str, params
from crewboard.runner.tools.workspace import confine, shown

MAX_ENTRIES = 500


def list_files(args: dict[str, Any], ctx: ToolContext) -> str:
    relative = arg_str(args, "path", ".")
    root = confine(ctx.workspace, relative)
    if not root.is_dir():
        raise ToolError(f"{relative!r} is not a folder")
    lines: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):  # never follows symlinks
        dirnames.sort()
        for name in dirnames + sorted(filenames):
            path = os.path.join(dirpath, name)
            label = shown(ctx.workspace, Path(path))
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if os.path.islink(path):
                lines.append(f"{label} -> (symlink, {os.readlink(path)})")
            elif name in dirnames:
                lines.append(f"{label}/")
            else:
                lines.append(f"{label} ({st.st_size} bytes)")
            if len(lines) >= MAX_ENTRIES:
                lines.append(f"[listing cut at {MAX_ENTRIES} entries]")
                return "\n".join(lines)
    return "\n".join(lines) if lines else f"{shown(ctx.workspace, root)} is empty"


TOOL = Tool(
    name="list_files",
    description="List the files and folders under a folder of your workspace (default: all of it).",
    parameters=params(
        [], path={"type": "string", "description": "Relative folder path, default '.'"}
    ),
    run=list_files,
)
