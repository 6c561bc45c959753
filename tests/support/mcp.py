"""Helpers for tests of MCP tool servers: the real servers from PyPI
(``mcp-server-time``, ``mcp-server-git``) and the purpose-written probe
server (``mcp_servers/probe_server.py``), written into a home's
``crewboard.toml`` and a folder of presets the way an administrator would."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support import need

PROBE_SERVER = Path(__file__).parent / "mcp_servers" / "probe_server.py"


def need_mcp() -> None:
    """Skip (or under CI fail) unless the MCP SDK, its test servers and
    bubblewrap are here."""
    need(shutil.which("bwrap"), "bubblewrap (bwrap) is not installed")
    need(importlib.util.find_spec("mcp"), "the mcp SDK is not installed (pip install -e '.[mcp]')")
    need(server_program("mcp-server-time"), "mcp-server-time is not installed")


def server_program(name: str) -> str | None:
    """A server program installed beside this interpreter."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else shutil.which(name)


def python_folders() -> list[str]:
    """The folders this interpreter and its packages live in, outside /usr
    (a sandboxed server sees them read-only: its ``read_only``)."""
    folders = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)} | {
        sys.prefix
    }
    return sorted(f for f in folders if not f.startswith("/usr"))


def probe_command(tag: str) -> list[str]:
    """The probe server as a stdio command; ``tag`` appears in its processes'
    command lines, so a test can look for them."""
    return [sys.executable, str(PROBE_SERVER), tag]


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    return json.dumps(value)


def write_mcp_setup(
    home: Path, servers: dict[str, dict[str, Any]], presets: dict[str, dict[str, Any]]
) -> Path:
    """``[mcp.NAME]`` tables in ``home/crewboard.toml`` (appended) and preset
    files in ``home/../agents``; returns the presets' folder. Every stdio
    server sees this interpreter's folders and the probe's read-only."""
    home.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, table in servers.items():
        if "command" in table:
            table = {"read_only": [*python_folders(), str(PROBE_SERVER.parent)], **table}
        lines.append(f"[mcp.{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
        lines.append("")
    with open(home / "crewboard.toml", "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    agents = home.parent / "agents"
    agents.mkdir(exist_ok=True)
    for preset_id, fields in presets.items():
        body = {"name": preset_id, "instructions": "Use your tools.", **fields}
        (agents / f"{preset_id}.agent.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    return agents


def processes_with(tag: str) -> list[int]:
    """Pids of the processes whose command line holds ``tag``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if tag.encode() in cmdline:
            found.append(int(entry.name))
    return found
