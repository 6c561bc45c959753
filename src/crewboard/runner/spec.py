"""The runner's spec as the runner reads it: the first line of its stdin,
parsed into :class:`crewboard.runspec.RunnerSpec`, the one type the launcher
and the chat turns build it with. The shape, the validation and the defaults
live there; this module is the runner's door to them, and knows where to say
what is wrong with a spec it cannot run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crewboard.runspec import AgentDef, Limits, ModelDef, RunnerSpec, SpecError

__all__ = [
    "AgentDef",
    "Limits",
    "ModelDef",
    "RunnerSpec",
    "SpecError",
    "find_log_path",
    "parse_spec",
]


def parse_spec(raw: Any) -> RunnerSpec:
    """Validate a decoded spec; a SpecError names the first bad key."""
    return RunnerSpec.from_json(raw)


def find_log_path(raw: Any) -> Path | None:
    """The log path of a spec that may be otherwise broken, so the runner can
    say what is wrong with it where a reader will look."""
    if isinstance(raw, dict) and isinstance(raw.get("logPath"), str):
        path = Path(raw["logPath"])
        if path.is_absolute():
            return path
    return None
