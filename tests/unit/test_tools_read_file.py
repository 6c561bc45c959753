"""Tool read_file: reads inside the workspace only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crewboard.runner.tools.base import ToolError
from crewboard.runner.tools.read_file import TOOL
from tests.support.confinement import resolution  # noqa: F401  (a fixture)
from tests.support.runner import tool_context

# Every test here runs on openat2 and on the walk that stands in for it.
pytestmark = pytest.mark.usefixtures("resolution")


def test_reads_a_file_in_the_workspace(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    (ctx.workspace / "notes").mkdir()
    (ctx.workspace / "notes" / "a.md").write_text("# Notes\nsome text")
    assert TOOL.run({"path": "notes/a.md"}, ctx) == "# Notes\nsome text"


def test_a_big_file_is_cut_to_the_output_limit(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path, tool_output_bytes=100)
    (ctx.workspace / "big.txt").write_text("x" * 1000)
    text = TOOL.run({"path": "big.txt"}, ctx)
    assert text.startswith("x" * 100) and "file cut: 1000 bytes" in text


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../secret_key", "'..' is not allowed"),
        ("notes/../../x", "'..' is not allowed"),
        ("/etc/passwd", "not an absolute one"),
        ("~/x", "not an absolute one"),
        ("", "empty"),
    ],
)
def test_paths_that_leave_the_workspace_are_refused(tmp_path: Path, path: str, why: str) -> None:
    ctx = tool_context(tmp_path)
    with pytest.raises(ToolError, match=why):
        TOOL.run({"path": path}, ctx)


def test_a_symlink_out_of_the_workspace_is_refused(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    (tmp_path / "secret_key").write_text("hunter2")
    os.symlink(tmp_path / "secret_key", ctx.workspace / "innocent.txt")
    os.symlink(tmp_path, ctx.workspace / "up")
    for path in ("innocent.txt", "up/secret_key"):
        with pytest.raises(ToolError, match="outside the workspace"):
            TOOL.run({"path": path}, ctx)


def test_missing_files_folders_and_bad_arguments_are_clear(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    (ctx.workspace / "dir").mkdir()
    with pytest.raises(ToolError, match="does not exist"):
        TOOL.run({"path": "nope.txt"}, ctx)
    with pytest.raises(ToolError, match="not a regular file"):
        TOOL.run({"path": "dir"}, ctx)
    with pytest.raises(ToolError, match="missing argument 'path'"):
        TOOL.run({}, ctx)
