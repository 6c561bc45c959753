"""Tool write_file: writes inside the workspace only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crewboard.runner.tools.base import ToolError
from crewboard.runner.tools.write_file import TOOL
from tests.support.confinement import resolution  # noqa: F401  (a fixture)
from tests.support.runner import tool_context

# Every test here runs on openat2 and on the walk that stands in for it.
pytestmark = pytest.mark.usefixtures("resolution")


def test_writes_creating_folders_then_appends(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    assert (
        TOOL.run({"path": "src/app.py", "content": "print(1)\n"}, ctx)
        == "wrote 9 bytes to src/app.py"
    )
    TOOL.run({"path": "src/app.py", "content": "print(2)\n", "append": True}, ctx)
    assert (ctx.workspace / "src" / "app.py").read_text() == "print(1)\nprint(2)\n"
    TOOL.run({"path": "src/app.py", "content": "new"}, ctx)
    assert (ctx.workspace / "src" / "app.py").read_text() == "new"


def test_escapes_are_refused_and_nothing_is_written_outside(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, ctx.workspace / "link")
    os.symlink(outside / "target.txt", ctx.workspace / "file-link")
    for path in ("../outside/x", "/tmp/x", "link/x", "file-link"):
        with pytest.raises(ToolError):
            TOOL.run({"path": path, "content": "pwned"}, ctx)
    assert list(outside.iterdir()) == []


def test_bad_arguments(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    with pytest.raises(ToolError, match="missing argument 'content'"):
        TOOL.run({"path": "a"}, ctx)
    with pytest.raises(ToolError, match="'append' must be true or false"):
        TOOL.run({"path": "a", "content": "", "append": "yes"}, ctx)
    (ctx.workspace / "d").mkdir()
    with pytest.raises(ToolError, match="is a directory"):
        TOOL.run({"path": "d", "content": "x"}, ctx)
