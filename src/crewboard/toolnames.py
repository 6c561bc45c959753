"""The tool registry: the names of the tools a preset may be granted.

Neutral ground, so that the preset loader (:mod:`crewboard.agents`, read by the
web process and the supervisor) can check a preset's ``tools`` without
importing runner code. Each name is a module of :mod:`crewboard.runner.tools`
that holds the tool itself (its description, argument schema and the function
that runs it); the runner loads it only when a run uses it.
``transfer_to_<agent>`` handoff tools are not in the registry: the runner's
loop makes them from a preset's ``handoffs``.

A job's agent also has the :data:`JOB_TOOLS`, whatever its preset lists:
blocking with a reason is how any job asks a human for help.
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

# Granted to every agent of a job run (not of a chat turn), on top of its preset's tools.
JOB_TOOLS: tuple[str, ...] = ("block",)


def granted_tools(preset_tools: tuple[str, ...], kind: str) -> tuple[str, ...]:
    """The tools an agent has in a run of ``kind`` (``job`` or ``chat``)."""
    if kind != "job":
        return preset_tools
    return preset_tools + tuple(t for t in JOB_TOOLS if t not in preset_tools)
