"""The web process's view of the administrator's MCP servers: which tools
each one offers and whether it starts, for ``GET /api/agents`` (each
preset's MCP tools) and ``GET /api/mcp`` (each server's state and last error).

The web process never imports the MCP SDK: it lists a server's tools by
running ``python -m crewboard.runner.mcp_list``, which starts the server
exactly as a run does (inside the same sandbox, in a scratch workspace of
its own that is removed afterwards) and stops it again. Each server is
listed once when the web starts; one that failed is tried again when asked
about after :data:`RETRY_S`.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any

import trio

from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.home import Home
from crewboard.mcpspec import McpServer, granted
from crewboard.processes import runner_env

log = logging.getLogger(__name__)

# A server that failed to start is listed again no sooner than this.
RETRY_S = 60.0
# Beyond the server's own start timeout, for the lister's own start-up.
_LISTER_SLACK_S = 20.0


@dataclass
class ServerState:
    """What the web knows of one server."""

    server: McpServer
    # unchecked (not listed yet), starting, ready or failed.
    state: str = "unchecked"
    tools: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    checked_at: str | None = None
    checked_monotonic: float | None = None

    def public(self) -> dict[str, Any]:
        return {
            **self.server.public(),
            "state": self.state,
            "error": self.error,
            "checkedAt": self.checked_at,
            "tools": [{"name": t["name"], "description": t["description"]} for t in self.tools],
        }


class McpCatalog:
    """Each configured server's state; listing runs in the catalog's nursery."""

    def __init__(self, config: Config, home: Home, nursery: trio.Nursery) -> None:
        self.config = config
        self.home = home
        self.servers = {name: ServerState(server) for name, server in config.mcp.items()}
        self._nursery = nursery

    def refresh_stale(self) -> None:
        """List again, in the background, the servers not listed yet or that
        failed longer than :data:`RETRY_S` ago."""
        now = trio.current_time()
        for entry in self.servers.values():
            stale = entry.state == "failed" and (
                entry.checked_monotonic is None or now - entry.checked_monotonic >= RETRY_S
            )
            if entry.state == "unchecked" or stale:
                entry.state = "starting"
                self._nursery.start_soon(self._list, entry)

    async def _list(self, entry: ServerState) -> None:
        server = entry.server
        scratch = self.home.workspace(f"mcp-list-{server.name}")
        request = {
            "server": server.to_json(),
            "workspace": str(scratch),
            "limits": self.config.runner_limits().to_json(),
        }
        try:
            with trio.move_on_after(server.start_timeout_s + _LISTER_SLACK_S) as scope:
                done = await trio.run_process(
                    [sys.executable, "-m", "crewboard.runner.mcp_list"],
                    stdin=json.dumps(request).encode() + b"\n",
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                    env=runner_env(),
                )
            if scope.cancelled_caught:
                answer: dict[str, Any] = {"error": "listing its tools did not finish in time"}
            else:
                try:
                    answer = json.loads(done.stdout.decode().strip().splitlines()[-1])
                except (ValueError, IndexError):
                    said = done.stderr.decode(errors="replace").strip()[-500:]
                    answer = {"error": f"the tool lister failed: {said or done.returncode}"}
        finally:
            await trio.to_thread.run_sync(shutil.rmtree, scratch, True)
        entry.checked_at = utcnow().isoformat(timespec="seconds").replace("+00:00", "Z")
        entry.checked_monotonic = trio.current_time()
        if "error" in answer:
            entry.state, entry.error, entry.tools = "failed", str(answer["error"]), []
            log.warning("MCP server %s: %s", server.name, entry.error)
        else:
            entry.state, entry.error = "ready", None
            entry.tools = [t for t in answer.get("tools", []) if isinstance(t, dict)]

    def preset_tools(self, servers: tuple[str, ...], grants: tuple[str, ...]) -> list[dict]:
        """The MCP tools a preset naming ``servers`` (and ``grants``) has, as
        far as they are known."""
        out = []
        for name in servers:
            entry = self.servers.get(name)
            if entry is None:
                continue
            for tool in entry.tools:
                if granted(servers, grants, name, tool.get("tool", "")):
                    out.append(
                        {"name": tool["name"], "description": tool["description"], "server": name}
                    )
        return out


async def serve_mcp_catalog(
    config: Config, home: Home, *, task_status: trio.TaskStatus[McpCatalog]
) -> None:
    """Hold the catalog and list every server once, in the background."""
    async with trio.open_nursery() as nursery:
        catalog = McpCatalog(config, home, nursery)
        catalog.refresh_stale()
        task_status.started(catalog)
        await trio.sleep_forever()
