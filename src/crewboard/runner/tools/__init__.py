"""The runner's tools, one module each, exposing ``TOOL`` (a
:class:`.base.Tool`). Which tools exist is decided by the registry in
:mod:`crewboard.toolnames`; a tool module is loaded only when a run uses it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from crewboard.toolnames import TOOL_NAMES

if TYPE_CHECKING:
    from crewboard.runner.tools.base import Tool

__all__ = ["TOOL_NAMES", "load_tool"]


def load_tool(name: str) -> Tool:
    """The tool called ``name``; KeyError for a name not in the registry."""
    if name not in TOOL_NAMES:
        raise KeyError(name)
    module = importlib.import_module(f"crewboard.runner.tools.{name}")
    tool: Tool = module.TOOL
    return tool
