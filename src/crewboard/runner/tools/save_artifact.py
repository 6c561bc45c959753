"""Tool ``save_artifact``: save a named file among the run's artifacts, the
files a user downloads from the job (not the scratch workspace)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

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
    return name


def write_artifact(artifact_dir: Path, name: str, content: str) -> int:
    """Write an artifact atomically (a reader never sees half a file); returns its size."""
    check_name(name)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    data = content.encode()
    fd, tmp = tempfile.mkstemp(dir=artifact_dir, prefix=".saving-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, artifact_dir / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(data)


def save_artifact(args: dict[str, Any], ctx: ToolContext) -> str:
    name = check_name(arg_str(args, "name"))
    size = write_artifact(ctx.artifact_dir, name, arg_str(args, "content"))
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
