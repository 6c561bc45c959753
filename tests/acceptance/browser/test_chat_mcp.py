"""The chat's agent picker shows the MCP tools of the agent picked, and a
turn calls one: a site of its own whose ``crewboard.toml`` declares the real
``mcp-server-time`` and whose presets name it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.acceptance.browser.conftest import Site, serving
from tests.support.mcp import need_mcp, server_program, write_mcp_setup

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    need_mcp()
    home = tmp_path_factory.mktemp("browser-mcp") / "home"
    home.mkdir()
    # Top-level keys come before the [mcp.NAME] tables the helper appends.
    (home / "crewboard.toml").write_text(f'CREWBOARD_AGENTS = "{home.parent / "agents"}"\n')
    write_mcp_setup(
        home,
        {"time": {"command": [server_program("mcp-server-time")]}},
        {"clock": {"description": "Tells the time.", "mcp": ["time"]}},
    )
    with serving(home) as served:
        yield served


def wait_until_listed(page) -> None:
    """The web lists the server's tools once, in the background, at start."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        agents = page.request.get("/api/agents").json()
        if next(a for a in agents if a["id"] == "clock")["mcpTools"]:
            return
        page.wait_for_timeout(200)
    raise AssertionError("the time server's tools were not listed within 90 s")


def test_the_agent_picker_lists_the_agents_mcp_tools_and_a_turn_calls_one(page):
    wait_until_listed(page)
    page.goto("/chat")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    tools = page.locator("#agent-tools")
    expect(tools).to_be_hidden()  # the default agent has no MCP server
    page.get_by_label("Agent").select_option("clock")
    expect(tools).to_be_visible()
    expect(tools.locator("summary")).to_have_text("MCP tools (2) from time")
    tools.locator("summary").click()
    expect(tools.locator("li").filter(has_text="time__get_current_time")).to_contain_text(
        "Get current time in a specific timezone"
    )
    page.get_by_label("Message").fill('/tool time__get_current_time {"timezone": "Asia/Tokyo"}')
    page.get_by_label("Message").press("Enter")
    turn = page.locator(".turn").last
    # The server starts for the turn, in the sandbox: allow for a loaded machine.
    expect(turn.locator("details.thinking summary")).to_contain_text("1 tool call", timeout=90_000)
    # The server's answer, quoted by the offline model.
    expect(turn.locator(".message").last).to_contain_text('"day_of_week"', timeout=30_000)
