"""Tool ``save_artifact``: save a named file among the run's artifacts, the
files a user downloads from the job (not the scratch workspace)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from crewboard.runner.tools import confined
from crewboard.runner.tools.base import Tool, ToolContext, ToolError, arg_str, params

MAX_NAME = 128


def check_name(name: str) -> str:
    """An artifact name is a plain file name: no folders, no ``..``, no hidden files."""
    if not name or len(name) > MAX_NAME:
        raise ToolError(f"an artifact name is 1 to {MAX_NAME} characters")
    if "/" in name or "\\" in name or "\0" in name or name.startswith("."):
        raise ToolError(f"{name!r}: an artifact name is a plain file name (no folders, no '..')")
    if any(ord(c) < 32 for c in name):
        raise ToolError(f"{name!r}: an artifact name has no control characters")
    try:
        os.fsencode(name)
    except UnicodeEncodeError as exc:
        raise ToolError(f"{name!r}: an artifact name must be valid text") from exc
    return name


def write_artifact(artifact_dir: Path, name: str, content: str | bytes) -> int:
    """Write an artifact atomically (a reader never sees half a file), through
    an fd of the artifact folder and without following a link planted at its
    name (see :mod:`.confined`); returns its size."""
    check_name(name)
    data = content.encode() if isinstance(content, str) else content
    with confined.opened_folder(artifact_dir, create=True) as folder:
        confined.replace_file(folder, name, data, mode=0o644)
    return len(data)


def save_artifact(args: dict[str, Any], ctx: ToolContext) -> str:
    name = check_name(arg_str(args, "name"))
    try:
        size = write_artifact(ctx.artifact_dir, name, arg_str(args, "content"))
    except OSError as exc:
        raise ToolError(f"cannot save the artifact {name!r}: {exc.strerror}") from exc
    if name not in ctx.saved_artifacts:
        ctx.saved_artifacts.append(name)
    return f"saved artifact {name} ({size} bytes)"


TOOL = Tool(
    name="save_artifact",
    description=(
        "Save a finished deliverable (a report, a brief, code) as a named file the user can "
        "download from this run. Use a plain file name such as 'brief.md'."
    ),
    parameters=params(
        ["name", "content"],
        name={"type": "string", "description": "File name, e.g. report.md (no folders)"},
        content={"type": "string", "description": "The full text of the file"},
    ),
    run=save_artifact,
)
