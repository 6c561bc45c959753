"""The tool registry: every tool a preset may be granted, by name.

Each tool is its own module here exposing ``TOOL`` (a :class:`.base.Tool`), and
is loaded only when a run uses it, so importing this registry (as the preset
loader does) costs nothing. ``transfer_to_<agent>`` handoff tools are not in
the registry: the loop makes them from a preset's ``handoffs``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crewboard.runner.tools.base import Tool

TOOL_NAMES: tuple[str, ...] = (
    "read_file",
    "write_file",
    "list_files",
    "http_get",
    "save_artifact",
    "block",
    "shell",
)


def load_tool(name: str) -> Tool:
    """The tool called ``name``; KeyError for a name not in the registry."""
    if name not in TOOL_NAMES:
        raise KeyError(name)
    module = importlib.import_module(f"crewboard.runner.tools.{name}")
    return module.TOOL
