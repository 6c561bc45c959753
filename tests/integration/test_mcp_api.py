"""MCP servers as users and administrators see them over HTTP, through the
live web app: each preset's MCP tools in ``GET /api/agents``, each server's
state and last error in ``GET /api/mcp`` (administrators only), and a chat
whose agent works on a Git repository in its workspace with the real
``mcp-server-git`` from PyPI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from crewboard.config import Config
from tests.conftest import TEST_SETTINGS
from tests.support import need
from tests.support.chat import create_session, send
from tests.support.mcp import need_mcp, server_program, write_mcp_setup
from tests.support.waits import wait_for


@pytest.fixture
def config(tmp_path: Path) -> Config:
    need_mcp()
    need(server_program("mcp-server-git"), "mcp-server-git is not installed")
    home = tmp_path / "home"
    failing = [sys.executable, "-c", "import sys; sys.exit('cannot find its database')"]
    agents = write_mcp_setup(
        home,
        {
            "time": {"command": [server_program("mcp-server-time")]},
            "git": {"command": [server_program("mcp-server-git")], "env": ["GIT_TOKEN"]},
            "broken": {"command": failing, "start_timeout_s": 5},
        },
        {
            "clock": {"description": "Tells the time.", "mcp": ["time"]},
            "converter": {"mcp": ["time"], "mcp_tools": ["time.convert_time"]},
            "gitter": {"mcp": ["git"], "tools": ["write_file"]},
            "orphan": {"mcp": ["nowhere"]},
        },
    )
    environ = {**TEST_SETTINGS, "CREWBOARD_AGENTS": str(agents), "GIT_TOKEN": "a-secret-token"}
    return Config.load(home, environ=environ)


async def agents_when_listed(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """``GET /api/agents`` by id, once the servers' tools are listed."""

    async def listed() -> dict[str, dict[str, Any]] | None:
        response = await client.get("/api/agents")
        assert response.status_code == 200
        agents = {a["id"]: a for a in response.json()}
        ready = agents["clock"]["mcpTools"] and agents["gitter"]["mcpTools"]
        return agents if ready else None

    return await wait_for(listed, 60, "the MCP servers' tools to be listed")


async def test_each_preset_lists_the_mcp_tools_it_has(as_alice: httpx.AsyncClient) -> None:
    agents = await agents_when_listed(as_alice)
    clock = agents["clock"]
    assert clock["mcp"] == ["time"]
    assert {t["name"] for t in clock["mcpTools"]} == {
        "time__get_current_time",
        "time__convert_time",
    }
    current = next(t for t in clock["mcpTools"] if t["name"] == "time__get_current_time")
    assert current == {
        "name": "time__get_current_time",
        "description": "Get current time in a specific timezone",
        "server": "time",
    }
    # A preset granted a subset sees only that.
    assert [t["name"] for t in agents["converter"]["mcpTools"]] == ["time__convert_time"]
    assert "git__git_status" in {t["name"] for t in agents["gitter"]["mcpTools"]}
    # A preset without MCP has none.
    assert agents["assistant"]["mcp"] == [] and agents["assistant"]["mcpTools"] == []


async def test_administrators_see_each_servers_state_and_last_error(
    as_admin: httpx.AsyncClient, as_alice: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    async def settled() -> dict[str, dict[str, Any]] | None:
        response = await as_admin.get("/api/mcp")
        assert response.status_code == 200
        servers = {s["name"]: s for s in response.json()}
        return servers if all(s["state"] in ("ready", "failed") for s in servers.values()) else None

    servers = await wait_for(settled, 60, "every server to be listed")
    assert servers["time"]["state"] == "ready" and servers["time"]["error"] is None
    assert servers["time"]["transport"] == "stdio"
    assert len(servers["time"]["tools"]) == 2
    broken = servers["broken"]
    assert broken["state"] == "failed" and broken["tools"] == []
    assert "the MCP server 'broken' did not start" in broken["error"]
    assert "cannot find its database" in broken["error"]
    # The variables a server gets are named, their values never shown.
    assert servers["git"]["env"] == ["GIT_TOKEN"]
    assert "a-secret-token" not in json.dumps(servers)
    assert (await as_alice.get("/api/mcp")).status_code == 403
    assert (await anon.get("/api/mcp")).status_code == 401


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


async def test_a_chat_agent_commits_to_a_repository_in_its_workspace(
    as_alice: httpx.AsyncClient, config: Config
) -> None:
    session = await create_session(as_alice, agent="gitter")
    repo = config.home / "workspaces" / f"chat-{session['id']}" / "repo"
    repo.mkdir(parents=True)
    git("init", "-q", cwd=repo)
    git("config", "user.email", "agent@example.test", cwd=repo)
    git("config", "user.name", "Agent", cwd=repo)
    arguments = {"path": "repo/notes.md", "content": "# Notes\n"}
    frames = await send(
        as_alice,
        session["id"],
        "\n".join(
            [
                f"/tool write_file {json.dumps(arguments)}",
                "then",
                f"/tool git__git_add {json.dumps({'repo_path': str(repo), 'files': ['notes.md']})}",
                "then",
                "/tool git__git_commit "
                + json.dumps({"repo_path": str(repo), "message": "Add notes"}),
                "then",
                f"/tool git__git_log {json.dumps({'repo_path': str(repo)})}",
            ]
        ),
    )
    chunks = [f.data for f in frames if f.type == "chunk"]
    starts = [c["toolName"] for c in chunks if c["type"] == "agent_tool_start"]
    assert starts == ["write_file", "git__git_add", "git__git_commit", "git__git_log"]
    ends = [c for c in chunks if c["type"] == "agent_tool_end"]
    assert not [e for e in ends if e.get("isError")], ends
    assert "Add notes" in ends[-1]["result"]
    # The commit is in the repository, as the user's own git sees it.
    assert git("log", "--format=%s", cwd=repo).strip() == "Add notes"
    assert git("show", "--format=", "--name-only", "HEAD", cwd=repo).strip() == "notes.md"


async def test_a_preset_naming_an_unconfigured_server_says_so_when_used(
    as_alice: httpx.AsyncClient,
) -> None:
    agents = {a["id"]: a for a in (await as_alice.get("/api/agents")).json()}
    assert agents["orphan"]["mcp"] == ["nowhere"] and agents["orphan"]["mcpTools"] == []
    session = await create_session(as_alice, agent="orphan")
    response = await as_alice.post(
        f"/api/session/newUserMessage/{session['id']}", json={"message": "hello"}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert "names the MCP server 'nowhere', which is not configured" in error["message"]
