"""Tool save_artifact: plain file names, into the run's artifact folder."""

from __future__ import annotations

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
