"""Tool read_file: reads inside the workspace only."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from crewboard.runner.tools.base import ToolContext, ToolError
from crewboard.runner.tools.read_file import TOOL
from tests.support.confinement import (
    ENCODED,
    ESCAPES,
    SECRET,
    UNNAMEABLE,
    hostile_workspace,
    resolution,  # noqa: F401  (a fixture)
)
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


# --- a hostile tenant ------------------------------------------------------------


def reads(tmp_path: Path) -> tuple[ToolContext, Path]:
    ctx = tool_context(tmp_path)
    hostile_workspace(tmp_path, ctx.workspace)
    return ctx, ctx.workspace


@pytest.mark.parametrize("path", ESCAPES)
def test_no_way_up_or_out_reads_a_byte(tmp_path: Path, path: str) -> None:
    ctx, _ = reads(tmp_path)
    with pytest.raises(ToolError) as refused:
        TOOL.run({"path": path}, ctx)
    assert SECRET not in str(refused.value)


def test_an_absolute_path_to_the_secret_itself_is_refused(tmp_path: Path) -> None:
    ctx, _ = reads(tmp_path)
    with pytest.raises(ToolError, match="not an absolute one"):
        TOOL.run({"path": str(tmp_path / "secret_key")}, ctx)


@pytest.mark.parametrize("path", ENCODED)
def test_encoded_paths_are_names_taken_literally(tmp_path: Path, path: str) -> None:
    ctx, workspace = reads(tmp_path)
    with pytest.raises(ToolError, match="does not exist"):
        TOOL.run({"path": path}, ctx)
    (workspace / path).parent.mkdir(parents=True, exist_ok=True)
    (workspace / path).write_text("the file of that very name")
    assert TOOL.run({"path": path}, ctx) == "the file of that very name"


@pytest.mark.parametrize(("path", "why"), UNNAMEABLE)
def test_a_nul_or_a_path_that_is_not_text_is_a_clear_error(
    tmp_path: Path, path: str, why: str
) -> None:
    ctx, _ = reads(tmp_path)
    with pytest.raises(ToolError, match=why):
        TOOL.run({"path": path}, ctx)


@pytest.mark.parametrize(
    "path",
    ["key", "priv/board.db", "rootfs/etc/passwd", "rootfs/proc/self/environ", "alias/x"],
)
def test_no_symlink_is_followed_at_any_component(tmp_path: Path, path: str) -> None:
    ctx, _ = reads(tmp_path)
    with pytest.raises(ToolError, match="goes through a symlink") as refused:
        TOOL.run({"path": path}, ctx)
    assert SECRET not in str(refused.value)


def test_a_hard_link_to_a_file_outside_is_not_read(tmp_path: Path) -> None:
    # Only a shell without the sandbox can make one (the sandbox's mounts stop
    # link() at the workspace); a file with more than one link is not read.
    ctx, _ = reads(tmp_path)
    with pytest.raises(ToolError, match="2 hard links") as refused:
        TOOL.run({"path": "hard"}, ctx)
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize("path", ["pipe", "sock"])
def test_a_fifo_or_a_socket_is_refused_without_hanging(tmp_path: Path, path: str) -> None:
    ctx, _ = reads(tmp_path)
    answer: list[str] = []

    def read() -> None:
        try:
            TOOL.run({"path": path}, ctx)
        except ToolError as exc:
            answer.append(str(exc))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(5)
    assert answer and "not a regular file" in answer[0]
