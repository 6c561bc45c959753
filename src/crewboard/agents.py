"""Agent presets: the ``<id>.agent.yaml`` files shipped in ``agents/`` and found
in the operator's extra folders (``CREWBOARD_AGENTS``). Neutral ground: the web
process lists them, the supervisor and the chat turns put them in a runner's
spec, and the template validator checks that jobs name real ones.

A preset file holds ``name``, ``description``, ``instructions``, an optional
``model`` (``provider:model``), ``tools`` (names from the tool registry,
:mod:`crewboard.toolnames`), ``handoffs`` (ids of other presets) and an
optional ``max_tokens`` (the cap on each of its answers, over the
provider's), ``mcp`` (names of the administrator's MCP servers,
``[mcp.NAME]`` in ``crewboard.toml``) and ``mcp_tools`` (``NAME.tool``
entries: when given, only these of the servers' tools); its id is the file stem.
Later folders override earlier ones by id. A broken file is reported (file and
field) and left out; the others still load.
"""

from __future__ import annotations

import importlib.resources
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crewboard.mcpspec import SERVER_NAME
from crewboard.toolnames import TOOL_NAMES

SUFFIX = ".agent.yaml"
# An id becomes part of a tool name (transfer_to_<id>), which providers cap at 64.
_ID = re.compile(r"^[A-Za-z0-9_-]{1,52}$")
_MODEL = re.compile(r"^[A-Za-z0-9_.-]+:\S+$")
_FIELDS = (
    "name",
    "description",
    "instructions",
    "model",
    "tools",
    "handoffs",
    "max_tokens",
    "mcp",
    "mcp_tools",
)
_MCP_TOOL = re.compile(r"^([A-Za-z0-9-]{1,24})\.([A-Za-z0-9_-]{1,64})$")


@dataclass(frozen=True)
class Preset:
    id: str
    name: str
    description: str
    instructions: str
    model: str | None = None
    tools: tuple[str, ...] = ()
    handoffs: tuple[str, ...] = ()
    max_tokens: int | None = None
    mcp: tuple[str, ...] = ()
    mcp_tools: tuple[str, ...] = ()
    path: Path | None = field(default=None, compare=False)

    def public(self) -> dict[str, Any]:
        """What ``GET /api/agents`` shows (the instructions stay server-side)."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "model": self.model,
            "tools": list(self.tools),
            "handoffs": list(self.handoffs),
            "mcp": list(self.mcp),
        }

    def runner_dict(self) -> dict[str, Any]:
        """The preset as a runner's spec carries it."""
        return {
            **self.public(),
            "instructions": self.instructions,
            "maxTokens": self.max_tokens,
            "mcpTools": list(self.mcp_tools),
        }


@dataclass(frozen=True)
class PresetError:
    """Why one preset file could not be loaded (the operator's to fix)."""

    path: Path
    field: str | None
    message: str

    @property
    def preset_id(self) -> str:
        return _preset_id(self.path)

    def __str__(self) -> str:
        where = f"{self.path}: {self.field}" if self.field else str(self.path)
        return f"{where}: {self.message}"


def shipped_agents_dir() -> Path:
    return Path(str(importlib.resources.files("crewboard") / "_shipped" / "agents"))


def _preset_id(path: Path) -> str:
    return path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem


class _Invalid(Exception):
    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _names(data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Invalid(key, "must be a list of names")
    return tuple(dict.fromkeys(value))


def _text(data: dict[str, Any], key: str, *, required: bool) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(key, "is required and must be a non-empty string")
    return value.strip()


def parse_preset(path: Path, text: str) -> Preset:
    """One preset from a file's text; raises ``_Invalid`` naming the bad field."""
    preset_id = _preset_id(path)
    if not _ID.match(preset_id):
        raise _Invalid(
            None,
            "the file name must be <id>.agent.yaml with an id of letters, "
            "digits, '-' or '_' (at most 52)",
        )
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _Invalid(None, f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise _Invalid(None, "must be a YAML mapping of name, description, instructions, ...")
    unknown = sorted(str(k) for k in data if k not in _FIELDS)
    if unknown:
        raise _Invalid(unknown[0], f"unknown field (expected: {', '.join(_FIELDS)})")
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not _MODEL.match(model)):
        raise _Invalid("model", "must be a model spec 'provider:model', e.g. offline:scripted")
    tools = _names(data, "tools")
    bad = [t for t in tools if t not in TOOL_NAMES]
    if bad:
        raise _Invalid("tools", f"unknown tool {bad[0]!r} (known: {', '.join(TOOL_NAMES)})")
    max_tokens = data.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise _Invalid("max_tokens", "must be a positive integer")
    mcp = _names(data, "mcp")
    bad = [name for name in mcp if not SERVER_NAME.match(name)]
    if bad:
        raise _Invalid("mcp", f"{bad[0]!r} is not an MCP server name (letters, digits, '-')")
    mcp_tools = _names(data, "mcp_tools")
    for entry in mcp_tools:
        match = _MCP_TOOL.match(entry)
        if match is None:
            raise _Invalid("mcp_tools", f"{entry!r} is not of the form SERVER.tool")
        if match.group(1) not in mcp:
            raise _Invalid("mcp_tools", f"{entry!r} names a server not listed in mcp")
    handoffs = _names(data, "handoffs")
    if preset_id in handoffs:
        raise _Invalid("handoffs", "a preset cannot hand off to itself")
    return Preset(
        id=preset_id,
        name=_text(data, "name", required=True),
        description=_text(data, "description", required=False),
        instructions=_text(data, "instructions", required=True),
        model=model,
        tools=tools,
        handoffs=handoffs,
        max_tokens=max_tokens,
        mcp=mcp,
        mcp_tools=mcp_tools,
        path=path,
    )


def load_presets(
    dirs: Iterable[str | os.PathLike[str]] = (), *, shipped: bool = True
) -> tuple[dict[str, Preset], list[PresetError]]:
    """Every valid preset by id, and an error for each file that is not. The
    shipped folder comes first (unless ``shipped=False``), then ``dirs`` in
    order; a later file replaces an earlier one of the same id, but a broken
    file does not replace a working one."""
    folders = [shipped_agents_dir()] if shipped else []
    folders += [Path(d) for d in dirs]
    presets: dict[str, Preset] = {}
    errors: list[PresetError] = []
    for folder in folders:
        if not folder.is_dir():
            if folder.exists():
                errors.append(PresetError(folder, None, "is not a folder"))
            continue
        for path in sorted(folder.glob("*" + SUFFIX)):
            try:
                preset = parse_preset(path, path.read_text(encoding="utf-8"))
            except _Invalid as exc:
                errors.append(PresetError(path, exc.field, exc.message))
                continue
            except (OSError, UnicodeDecodeError) as exc:
                errors.append(PresetError(path, None, f"cannot be read: {exc}"))
                continue
            presets[preset.id] = preset
    # A handoff to a missing (or broken) preset breaks the preset naming it,
    # which may break those handing off to it in turn.
    changed = True
    while changed:
        changed = False
        for preset in list(presets.values()):
            missing = [h for h in preset.handoffs if h not in presets]
            if missing:
                del presets[preset.id]
                message = f"hands off to {missing[0]!r}, which is not a loaded preset"
                errors.append(PresetError(preset.path or Path(preset.id), "handoffs", message))
                changed = True
    return dict(sorted(presets.items())), errors


def run_agents(presets: dict[str, Preset], agent_id: str) -> dict[str, dict[str, Any]]:
    """The ``agents`` part of a runner's spec: the starting preset and every
    preset reachable from it by handoffs. KeyError if ``agent_id`` is unknown."""
    found: dict[str, dict[str, Any]] = {}
    todo = [agent_id]
    while todo:
        current = presets[todo.pop()]
        if current.id in found:
            continue
        found[current.id] = current.runner_dict()
        todo.extend(h for h in current.handoffs if h not in found)
    return found
