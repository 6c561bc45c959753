"""Tool write_file: writes inside the workspace only."""

from __future__ import annotations

import os
import sysconfig
import threading
from pathlib import Path

import pytest

from crewboard.runner.tools.base import ToolContext, ToolError
from crewboard.runner.tools.write_file import TOOL
from tests.support.confinement import (
    ENCODED,
    ESCAPES,
    UNNAMEABLE,
    hostile_workspace,
    outside,
    resolution,  # noqa: F401  (a fixture)
)
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


# --- a hostile tenant ------------------------------------------------------------


def hostile(tmp_path: Path) -> tuple[ToolContext, dict[str, bytes]]:
    """A context on a trapped workspace, and what lies outside it beforehand."""
    ctx = tool_context(tmp_path)
    hostile_workspace(tmp_path, ctx.workspace)
    return ctx, outside(tmp_path, ctx.workspace)


@pytest.mark.parametrize("append", [False, True])
@pytest.mark.parametrize(
    "path",
    [
        *ESCAPES,
        "../private/evil.pth",
        "../../../../../../../../tmp/evil.pth",
        "key",
        "priv/board.db",
        "priv/evil.pth",
        "rootfs/tmp/evil.pth",
        "alias/new.txt",
    ],
)
def test_nothing_is_written_outside_by_any_path(tmp_path: Path, path: str, append: bool) -> None:
    ctx, before = hostile(tmp_path)
    with pytest.raises(ToolError):
        TOOL.run({"path": path, "content": "import os", "append": append}, ctx)
    assert outside(tmp_path, ctx.workspace) == before
    assert not Path("/tmp/evil.pth").exists()


def test_an_absolute_path_into_a_site_packages_is_refused(tmp_path: Path) -> None:
    ctx, _ = hostile(tmp_path)
    target = Path(sysconfig.get_paths()["purelib"]) / "crewboard-hostile-test.pth"
    with pytest.raises(ToolError, match="not an absolute one"):
        TOOL.run({"path": str(target), "content": "import os"}, ctx)
    assert not target.exists()


@pytest.mark.parametrize("path", ENCODED)
def test_encoded_paths_are_written_literally_inside(tmp_path: Path, path: str) -> None:
    ctx, before = hostile(tmp_path)
    TOOL.run({"path": path, "content": "literal"}, ctx)
    assert (ctx.workspace / path).read_text() == "literal"
    assert outside(tmp_path, ctx.workspace) == before


@pytest.mark.parametrize(("path", "why"), UNNAMEABLE)
def test_a_nul_or_a_path_that_is_not_text_is_a_clear_error(
    tmp_path: Path, path: str, why: str
) -> None:
    ctx, _ = hostile(tmp_path)
    with pytest.raises(ToolError, match=why):
        TOOL.run({"path": path, "content": "x"}, ctx)


def test_a_hard_link_to_a_file_outside_is_replaced_never_written_through(tmp_path: Path) -> None:
    # Possible only for a shell without the sandbox (the sandbox's mounts stop
    # link() at the workspace). A write replaces the workspace's entry; an
    # append, which would extend the file itself, is refused.
    ctx, before = hostile(tmp_path)
    with pytest.raises(ToolError, match="2 hard links"):
        TOOL.run({"path": "hard", "content": "pwned", "append": True}, ctx)
    TOOL.run({"path": "hard", "content": "mine now"}, ctx)
    assert (ctx.workspace / "hard").read_text() == "mine now"
    assert outside(tmp_path, ctx.workspace) == before


@pytest.mark.parametrize("append", [False, True])
@pytest.mark.parametrize("path", ["pipe", "sock"])
def test_a_fifo_or_a_socket_is_refused_without_hanging(
    tmp_path: Path, path: str, append: bool
) -> None:
    ctx, _ = hostile(tmp_path)
    answer: list[str] = []

    def write() -> None:
        try:
            TOOL.run({"path": path, "content": "x", "append": append}, ctx)
        except ToolError as exc:
            answer.append(str(exc))

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    thread.join(5)
    assert answer and "not a regular file" in answer[0]


def test_a_replaced_file_keeps_its_permissions(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    script = ctx.workspace / "run.sh"
    script.write_text("echo 1")
    script.chmod(0o755)
    TOOL.run({"path": "run.sh", "content": "echo 2"}, ctx)
    assert script.read_text() == "echo 2" and os.access(script, os.X_OK)
    assert sorted(p.name for p in ctx.workspace.iterdir()) == ["run.sh"], "no temp file left"
