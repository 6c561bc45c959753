"""Tool list_files: lists the workspace, never following links out of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crewboard.runner.tools.base import ToolContext, ToolError
from crewboard.runner.tools.list_files import TOOL
from tests.support.confinement import (
    ENCODED,
    ESCAPES,
    UNNAMEABLE,
    hostile_workspace,
    resolution,  # noqa: F401  (a fixture)
)
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


# --- a hostile tenant ------------------------------------------------------------


def trapped(tmp_path: Path) -> ToolContext:
    ctx = tool_context(tmp_path)
    hostile_workspace(tmp_path, ctx.workspace)
    return ctx


def test_a_trapped_workspace_lists_its_traps_and_nothing_behind_them(tmp_path: Path) -> None:
    ctx = trapped(tmp_path)
    listing = TOOL.run({}, ctx)
    assert "rootfs -> (symlink, /)" in listing and "priv -> (symlink" in listing
    assert "pipe (special file)" in listing and "sock (special file)" in listing
    for behind in ("board.db", "etc", "passwd", "bin", "proc"):
        assert behind not in listing


@pytest.mark.parametrize("path", ["rootfs", "rootfs/etc", "priv", "alias", "key"])
def test_listing_through_a_symlink_is_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(ToolError, match="goes through a symlink"):
        TOOL.run({"path": path}, trapped(tmp_path))


@pytest.mark.parametrize("path", ESCAPES)
def test_no_way_up_or_out_lists_anything(tmp_path: Path, path: str) -> None:
    with pytest.raises(ToolError) as refused:
        TOOL.run({"path": path}, trapped(tmp_path))
    assert "secret_key" not in str(refused.value).replace(repr(path), "")


@pytest.mark.parametrize("path", ENCODED)
def test_encoded_paths_are_names_taken_literally(tmp_path: Path, path: str) -> None:
    ctx = trapped(tmp_path)
    with pytest.raises(ToolError, match="does not exist"):
        TOOL.run({"path": path}, ctx)
    (ctx.workspace / path).mkdir(parents=True)
    (ctx.workspace / path / "in.txt").write_text("x")
    assert TOOL.run({"path": path}, ctx).endswith("in.txt (1 bytes)")


@pytest.mark.parametrize(("path", "why"), UNNAMEABLE)
def test_a_nul_or_a_path_that_is_not_text_is_a_clear_error(
    tmp_path: Path, path: str, why: str
) -> None:
    with pytest.raises(ToolError, match=why):
        TOOL.run({"path": path}, trapped(tmp_path))


def test_a_file_or_a_fifo_is_not_a_folder(tmp_path: Path) -> None:
    ctx = trapped(tmp_path)
    for path in ("pipe", "sock", "hard"):
        with pytest.raises(ToolError, match="is not a folder"):
            TOOL.run({"path": path}, ctx)
