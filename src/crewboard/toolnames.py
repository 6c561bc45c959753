"""The tool registry: the names of the tools a preset may be granted.

Neutral ground, so that the preset loader (:mod:`crewboard.agents`, read by the
web process and the supervisor) can check a preset's ``tools`` without
importing runner code. Each name is a module of :mod:`crewboard.runner.tools`
that holds the tool itself (its description, argument schema and the function
that runs it); the runner loads it only when a run uses it.
``transfer_to_<agent>`` handoff tools are not in the registry: the runner's
loop makes them from a preset's ``handoffs``.
"""

from __future__ import annotations

TOOL_NAMES: tuple[str, ...] = (
    "read_file",
    "write_file",
    "list_files",
    "http_get",
    "save_artifact",
    "block",
    "shell",
)
