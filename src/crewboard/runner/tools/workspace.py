"""Confining paths to a run's workspace, shared by the file tools.

A path from the model must be relative, must not contain ``..``, and must still
lie inside the workspace once every symlink is resolved; anything else is a
refusal, never a silent rewrite.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from crewboard.runner.tools.base import ToolError


def confine(workspace: Path, relative: str) -> Path:
    """The real path that ``relative`` names inside ``workspace``."""
    if not relative or "\0" in relative:
        raise ToolError("the path is empty or contains a NUL byte")
    if os.path.isabs(relative) or relative.startswith("~"):
        raise ToolError(f"{relative!r}: use a path relative to the workspace, not an absolute one")
    if ".." in PurePosixPath(relative).parts:
        raise ToolError(f"{relative!r}: '..' is not allowed; paths stay inside the workspace")
    root = workspace.resolve()
    real = (root / relative).resolve()
    if real != root and not real.is_relative_to(root):
        raise ToolError(f"{relative!r} leads outside the workspace (through a symlink)")
    return real


def shown(workspace: Path, path: Path) -> str:
    """How a path is named back to the model: relative to the workspace."""
    relative = os.path.relpath(path, workspace.resolve())
    return "." if relative == "." else relative
