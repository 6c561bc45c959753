"""The README's table of offline-model directives names, for each directive
whose tool a preset may lack, exactly the shipped presets that have it: the
table is what a newcomer follows, so it must not drift from ``agents/``."""

from __future__ import annotations

import re
from pathlib import Path

from crewboard.agents import load_presets
from crewboard.toolnames import JOB_TOOLS

README = Path(__file__).resolve().parents[2] / "README.md"


def directive_rows() -> dict[str, str]:
    """The "works with" cell of each directive row, by directive."""
    rows = {}
    for line in README.read_text().splitlines():
        match = re.match(r"^\| `/(\w+)[^`]*` \|[^|]*\| (.+) \|$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def named(cell: str) -> list[str]:
    return [name.strip() for name in cell.rsplit(":", 1)[1].split(",")]


def test_each_directive_row_names_the_presets_that_have_its_tool() -> None:
    presets, errors = load_presets()
    assert not errors
    rows = directive_rows()
    assert set(rows) == {"tool", "handoff", "artifact", "block", "fail", "sleep"}
    with_handoffs = sorted(p.id for p in presets.values() if p.handoffs)
    assert named(rows["handoff"]) == with_handoffs
    saving = sorted(p.id for p in presets.values() if "save_artifact" in p.tools)
    assert named(rows["artifact"]) == saving
    assert "block" in JOB_TOOLS and rows["block"].startswith("every job")
    blocking = sorted(p.id for p in presets.values() if "block" in p.tools)
    assert named(rows["block"]) == blocking
