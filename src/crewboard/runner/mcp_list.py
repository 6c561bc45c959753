"""``python -m crewboard.runner.mcp_list``: start one MCP server the way a
run starts it (same sandbox, same SDK code: :mod:`crewboard.runner.mcp`),
list its tools and stop it. The web process runs this to show users which
tools each preset has, without importing the SDK itself.

Reads one line of JSON on stdin: ``{"server": {...}, "workspace": "/abs",
"limits": {...}}``; writes one line of JSON on stdout: ``{"tools": [{"name",
"description"}], "skipped": [...]}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from crewboard.mcpspec import McpServer, tool_name
from crewboard.nodump import make_non_dumpable
from crewboard.runner.main import read_spec_line
from crewboard.runner.mcp import McpHub, ServerFailed
from crewboard.runner.spec import Limits
from crewboard.runner.tools.base import ToolContext


def list_tools(raw: dict) -> dict:
    server = McpServer.from_json(raw["server"])
    workspace = Path(raw["workspace"])
    workspace.mkdir(parents=True, exist_ok=True)
    ctx = ToolContext(workspace, workspace / ".artifacts", Limits.from_json(raw.get("limits", {})))
    hub = McpHub({server.name: server}, ctx)
    try:
        hub.start()
    except ServerFailed as exc:
        return {"error": str(exc)}
    try:
        connection = hub.connections[server.name]
        tools = [
            {
                "name": tool_name(server.name, tool.name),
                "tool": tool.name,
                "description": tool.description or tool.title or "",
            }
            for tool in connection.tools.values()
        ]
        return {"tools": tools, "skipped": connection.skipped}
    finally:
        hub.close()


def main() -> None:
    make_non_dumpable()
    try:
        raw = json.loads(read_spec_line())
        out = list_tools(raw)
    except (ValueError, KeyError, TypeError) as exc:
        out = {"error": f"bad request: {exc}"}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
