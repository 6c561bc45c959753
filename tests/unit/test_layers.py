"""Layers point one way: board at the bottom; supervisor and web use board and
the neutral modules but never each other; the runner uses only the log format."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "crewboard"

FORBIDDEN = {
    "board": ("crewboard.web", "crewboard.supervisor", "crewboard.runner"),
    "supervisor": ("crewboard.web",),
    "web": ("crewboard.supervisor",),
    "runner": (
        "crewboard.board",
        "crewboard.web",
        "crewboard.supervisor",
        "crewboard.config",
        "crewboard.processes",
    ),
}
NEUTRAL = (
    "sessionlog.py",
    "processes.py",
    "runspec.py",
    "forkserver.py",
    "clock.py",
    "home.py",
    "errors.py",
)


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_one_way(layer):
    bad = []
    for path in (SRC / layer).rglob("*.py"):
        for name in imports_of(path):
            if name.startswith(FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(SRC)} imports {name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", NEUTRAL)
def test_neutral_modules_belong_to_no_layer(module):
    layers = ("crewboard.board", "crewboard.web", "crewboard.supervisor", "crewboard.runner")
    assert not [n for n in imports_of(SRC / module) if n.startswith(layers)]
