"""What every tool shares: the :class:`Tool` record the model sees, the
:class:`ToolContext` a call runs in, :class:`ToolError` for refusals, and small
argument readers that turn a model's bad arguments into a clear refusal."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crewboard.runner.spec import Limits

if TYPE_CHECKING:
    from crewboard.netguard import Resolver


class ToolError(Exception):
    """The model called a tool wrongly, or the tool refused (an escape attempt,
    a forbidden address, a disabled tool). The message goes back to the model
    as the tool's result; the run goes on."""


def system_resolver(host: str, port: int) -> list[str]:
    """The system's resolver, its refusal turned into the tool's."""
    # Imported on first use: runs that fetch nothing never load it.
    from crewboard import netguard

    try:
        return netguard.system_resolver(host, port)
    except netguard.AddressRefused as exc:
        raise ToolError(str(exc)) from exc


class ToolContext:
    """Everything a tool call may touch, and what it reports back to the loop."""

    def __init__(
        self,
        workspace: Path,
        artifact_dir: Path,
        limits: Limits | None = None,
        resolver: Resolver = system_resolver,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.workspace = workspace
        self.artifact_dir = artifact_dir
        self.limits = limits or Limits()
        self.resolver = resolver
        self.secrets = secrets
        self.saved_artifacts: list[str] = []
        self.block_reason: str | None = None
        # Process groups of running tool subprocesses, killed if the run is stopped.
        self.children: set[int] = set()
        self._lock = threading.Lock()

    def add_child(self, pgid: int) -> None:
        with self._lock:
            self.children.add(pgid)

    def discard_child(self, pgid: int) -> None:
        with self._lock:
            self.children.discard(pgid)

    def kill_children(self) -> None:
        with self._lock:
            pgids = list(self.children)
        for pgid in pgids:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class Tool:
    """A tool as the model sees it (name, description, JSON Schema of its
    arguments) and the function that runs it."""

    def __init__(
        self,
        name: str,
        description: str,
        parameters: dict[str, Any],
        run: Callable[[dict[str, Any], ToolContext], str],
    ) -> None:
        self.name = name
        self.description = description
        self.parameters = parameters
        self.run = run

    def schema(self) -> dict[str, Any]:
        """The tool as the Chat Completions ``tools`` list describes it."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def params(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema object for a tool's arguments."""
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def arg_str(args: dict[str, Any], key: str, default: str | None = None) -> str:
    value = args.get(key, default)
    if not isinstance(value, str):
        raise ToolError(
            f"argument {key!r} must be a string" if key in args else f"missing argument {key!r}"
        )
    return value


def arg_bool(args: dict[str, Any], key: str, default: bool = False) -> bool:
    value = args.get(key, default)
    if not isinstance(value, bool):
        raise ToolError(f"argument {key!r} must be true or false")
    return value


def arg_number(args: dict[str, Any], key: str, default: float) -> float:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ToolError(f"argument {key!r} must be a positive number")
    return float(value)


def clip(text: str, max_bytes: int) -> str:
    """``text`` cut to ``max_bytes`` of UTF-8, saying so when it was cut."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    kept = data[:max_bytes].decode(errors="ignore")
    return kept + f"\n[output cut: {len(data)} bytes, the first {max_bytes} shown]"
