"""Tool list_files: lists the workspace, never following links out of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crewboard.runner.tools.base import ToolError
from crewboard.runner.tools.list_files import TOOL
from tests.support.confinement import resolution  # noqa: F401  (a fixture)
from tests.support.runner import tool_context

# Every test here runs on openat2 and on the walk that stands in for it.
pytestmark = pytest.mark.usefixtures("resolution")


def test_lists_recursively_with_sizes(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    (ctx.workspace / "src").mkdir()
    (ctx.workspace / "src" / "main.py").write_text("pass\n")
    (ctx.workspace / "README.md").write_text("hi")
    assert TOOL.run({}, ctx).splitlines() == [
        "src/",
        "README.md (2 bytes)",
        "src/main.py (5 bytes)",
    ]
    assert TOOL.run({"path": "src"}, ctx) == "src/main.py (5 bytes)"


def test_an_empty_workspace_says_so(tmp_path: Path) -> None:
    assert TOOL.run({"path": "."}, tool_context(tmp_path)) == ". is empty"


def test_symlinks_are_shown_not_followed(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "board.db").write_text("x")
    os.symlink(tmp_path / "private", ctx.workspace / "peek")
    listing = TOOL.run({}, ctx)
    assert "board.db" not in listing
    assert "peek -> (symlink" in listing
    with pytest.raises(ToolError, match="outside the workspace"):
        TOOL.run({"path": "peek"}, ctx)


def test_folders_outside_are_refused(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    for path in ("..", "/", "a/../.."):
        with pytest.raises(ToolError):
            TOOL.run({"path": path}, ctx)
