"""Tool save_artifact: plain file names, into the run's artifact folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crewboard.runner.tools.base import ToolError
from crewboard.runner.tools.save_artifact import TOOL
from tests.support.confinement import resolution  # noqa: F401  (a fixture)
from tests.support.runner import tool_context

# Every test here runs on openat2 and on the walk that stands in for it.
pytestmark = pytest.mark.usefixtures("resolution")


def test_saves_a_named_file_and_reports_it(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    assert (
        TOOL.run({"name": "brief.md", "content": "# Brief"}, ctx)
        == "saved artifact brief.md (7 bytes)"
    )
    TOOL.run({"name": "brief.md", "content": "# Brief v2"}, ctx)
    assert (ctx.artifact_dir / "brief.md").read_text() == "# Brief v2"
    assert ctx.saved_artifacts == ["brief.md"]
    assert sorted(p.name for p in ctx.artifact_dir.iterdir()) == ["brief.md"], "no temp files left"


@pytest.mark.parametrize(
    "name", ["../x.md", "a/b.md", "..", ".hidden", "a\\b", "", "x" * 200, "a\nb"]
)
def test_names_with_folders_or_tricks_are_refused(tmp_path: Path, name: str) -> None:
    ctx = tool_context(tmp_path)
    with pytest.raises(ToolError):
        TOOL.run({"name": name, "content": "x"}, ctx)
    assert not ctx.artifact_dir.exists() or list(ctx.artifact_dir.iterdir()) == []


# --- a hostile tenant ------------------------------------------------------------


def test_a_link_planted_at_the_name_is_never_written_through(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    secret = tmp_path / "secret_key"
    secret.write_text("SIGNING-KEY")
    ctx.artifact_dir.mkdir(parents=True)
    os.symlink(secret, ctx.artifact_dir / "report.md")
    with pytest.raises(ToolError, match="cannot save the artifact"):
        TOOL.run({"name": "report.md", "content": "pwned"}, ctx)
    os.link(secret, ctx.artifact_dir / "hard.md")
    TOOL.run({"name": "hard.md", "content": "replaced"}, ctx)
    assert secret.read_text() == "SIGNING-KEY"
    assert (ctx.artifact_dir / "hard.md").read_text() == "replaced"


def test_a_symlinked_artifact_folder_is_refused(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    ctx.artifact_dir.parent.mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere", ctx.artifact_dir)
    with pytest.raises(ToolError, match="cannot save the artifact"):
        TOOL.run({"name": "a.md", "content": "x"}, ctx)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_fifo_at_the_name_is_refused_without_hanging(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    ctx.artifact_dir.mkdir(parents=True)
    os.mkfifo(ctx.artifact_dir / "out.md")
    with pytest.raises(ToolError, match="cannot save the artifact"):
        TOOL.run({"name": "out.md", "content": "x"}, ctx)


@pytest.mark.parametrize("name", ["%2e%2e", "%2e%2e%2fx.md", "x%2f..%2fy.md", "\uff0e\uff0e"])
def test_encoded_names_are_saved_literally_in_the_artifact_folder(
    tmp_path: Path, name: str
) -> None:
    ctx = tool_context(tmp_path)
    TOOL.run({"name": name, "content": "x"}, ctx)
    assert [p.name for p in ctx.artifact_dir.iterdir()] == [name]


@pytest.mark.parametrize(("name", "why"), [("a\0.md", "plain file name"), ("\ud800", "valid text")])
def test_a_nul_or_a_name_that_is_not_text_is_a_clear_error(
    tmp_path: Path, name: str, why: str
) -> None:
    with pytest.raises(ToolError, match=why):
        TOOL.run({"name": name, "content": "x"}, tool_context(tmp_path))
