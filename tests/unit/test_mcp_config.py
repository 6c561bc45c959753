"""MCP servers as the administrator writes them (``[mcp.NAME]`` in
``crewboard.toml``), as presets name them (``mcp``, ``mcp_tools``) and as a
runner's spec carries them; and how their results read."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

from crewboard.agents import load_presets, run_agents
from crewboard.config import Config
from crewboard.errors import ConfigError
from crewboard.mcpspec import McpServer, granted, run_servers, split_tool_name, tool_name
from crewboard.runspec import RunnerSpec, SpecError
from tests.support.runner import offline_spec


def load(tmp_path: Path, toml: str, **environ: str) -> Config:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "crewboard.toml").write_text(toml)
    return Config.load(home, environ=environ)


def test_a_stdio_table_reads_its_variables_and_keeps_them_secret(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        f"""
[mcp.git]
command = ["{sys.executable}", "-m", "mcp_server_git"]
env = ["GIT_TOKEN", "NOT_SET"]
cwd = "repo"
read_only = ["/opt/mcp"]
call_timeout_s = 20
""",
        GIT_TOKEN="s3cret-token",
    )
    server = config.mcp["git"]
    assert server.command == (sys.executable, "-m", "mcp_server_git")
    assert server.env == {"GIT_TOKEN": "s3cret-token"}  # an unset variable is left out
    assert server.cwd == "repo" and server.read_only == ("/opt/mcp",)
    assert server.call_timeout_s == 20 and server.network is False
    assert "GIT_TOKEN" in config.secret_env_names()
    assert "s3cret-token" not in repr(server) and "s3cret-token" not in repr(config)
    assert server.public()["env"] == ["GIT_TOKEN"]
    assert McpServer.from_json(server.to_json()) == server


def test_a_program_name_is_found_on_the_path(tmp_path: Path) -> None:
    config = load(tmp_path, '[mcp.shell]\ncommand = ["sh", "-c", "true"]\n', PATH="/bin:/usr/bin")
    assert Path(config.mcp["shell"].command[0]).is_absolute()


def test_an_http_table_sends_headers_from_named_variables(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[mcp.issues]\nurl = "https://mcp.example.test/mcp"\n'
        'headers = {Authorization = "ISSUES_AUTH"}\n',
        ISSUES_AUTH="Bearer abc123456",
    )
    server = config.mcp["issues"]
    assert server.transport == "http" and server.headers == {"Authorization": "Bearer abc123456"}
    assert server.public()["headers"] == ["Authorization"]
    assert "ISSUES_AUTH" in config.secret_env_names()


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ("[mcp.x]\n", "needs either command"),
        ('[mcp.x]\ncommand = ["/bin/true"]\nurl = "https://a.test"\n', "needs either command"),
        ('[mcp.x]\ncommand = ["no-such-program-here"]\n', "is not on the PATH"),
        ('[mcp.x]\nurl = "ftp://a.test"\n', "http:// or https://"),
        ('[mcp.x]\ncommand = ["/bin/true"]\ncwd = "../up"\n', "inside the run's workspace"),
        ('[mcp.x]\ncommand = ["/bin/true"]\ncwd = "/etc"\n', "inside the run's workspace"),
        ('[mcp.x]\ncommand = ["/bin/true"]\nnetwork = "yes"\n', "network must be true or false"),
        ('[mcp.x]\ncommand = ["/bin/true"]\ncall_timeout_s = 0\n', "positive number"),
        ('[mcp.x]\ncommand = ["/bin/true"]\nenv = "TOKEN"\n', "env must be a list"),
        ('[mcp.x]\ncommand = ["/bin/true"]\nsecret = 1\n', "unknown key 'secret'"),
        ('[mcp.x]\ncommand = ["/bin/true"]\nread_only = ["/"]\n', "read_only '/'"),
        ('[mcp."a.b"]\ncommand = ["/bin/true"]\n', "a server name is"),
        ('[mcp.a__b]\ncommand = ["/bin/true"]\n', "a server name is"),
        ("mcp = 3\n", "[mcp] must be a table"),
    ],
)
def test_a_malformed_table_is_refused_with_where_and_why(
    tmp_path: Path, toml: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=r"crewboard\.toml") as caught:
        load(tmp_path, toml, PATH="/bin:/usr/bin")
    assert says in str(caught.value)


def test_a_read_only_folder_may_not_hold_the_data_home(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds the data home"):
        load(tmp_path, f'[mcp.x]\ncommand = ["/bin/true"]\nread_only = ["{tmp_path}"]\n')


def write_preset(folder: Path, agent_id: str, extra: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    body = "name: N\ninstructions: Do it.\n" + extra
    (folder / f"{agent_id}.agent.yaml").write_text(body)


def test_presets_name_servers_and_may_grant_a_subset(tmp_path: Path) -> None:
    write_preset(tmp_path, "all", "mcp: [git]\n")
    write_preset(tmp_path, "some", "mcp: [git, time]\nmcp_tools: [git.git_status]\n")
    write_preset(tmp_path, "stray", "mcp: [git]\nmcp_tools: [time.now]\n")
    write_preset(tmp_path, "odd", "mcp: [git]\nmcp_tools: [git_status]\n")
    write_preset(tmp_path, "badname", "mcp: ['a.b']\n")
    presets, errors = load_presets([tmp_path], shipped=False)
    assert set(presets) == {"all", "some"}
    assert {e.preset_id: e.field for e in errors} == {
        "stray": "mcp_tools",
        "odd": "mcp_tools",
        "badname": "mcp",
    }
    some = presets["some"]
    assert some.public()["mcp"] == ["git", "time"]
    assert some.runner_dict()["mcpTools"] == ["git.git_status"]
    assert granted(some.mcp, some.mcp_tools, "git", "git_status")
    assert not granted(some.mcp, some.mcp_tools, "git", "git_commit")
    assert not granted(some.mcp, some.mcp_tools, "time", "get_current_time")
    assert granted(presets["all"].mcp, (), "git", "git_commit")
    assert not granted(presets["all"].mcp, (), "time", "x")


def test_a_run_carries_only_the_servers_its_presets_name(tmp_path: Path) -> None:
    write_preset(tmp_path, "gitter", "mcp: [git]\n")
    presets, _ = load_presets([tmp_path], shipped=False)
    git = McpServer("git", command=["/bin/true"], env={"T": "secret-value"})
    time = McpServer("time", command=["/bin/true"])
    agents = run_agents(presets, "gitter")
    assert run_servers({"git": git, "time": time}, agents) == {"git": git}
    with pytest.raises(ValueError, match="'git', which is not configured"):
        run_servers({"time": time}, agents)
    raw = offline_spec(tmp_path, "hi", agentId="gitter", agents=agents)
    raw["mcp"] = {"git": git.to_json()}
    spec = RunnerSpec.from_json(raw)
    assert spec.mcp == {"git": git} and spec.agents["gitter"].mcp == ("git",)
    assert RunnerSpec.from_json(spec.to_json()) == spec
    del raw["mcp"]
    with pytest.raises(SpecError, match="'git' is not among the spec's mcp"):
        RunnerSpec.from_json(raw)


def test_a_spec_without_mcp_says_nothing_of_it(tmp_path: Path) -> None:
    spec = RunnerSpec.from_json(offline_spec(tmp_path, "hi"))
    assert spec.mcp == {} and "mcp" not in spec.to_json()
    assert all("mcp" not in agent for agent in spec.to_json()["agents"].values())


def test_tool_names_join_server_and_tool_within_the_providers_rules() -> None:
    assert tool_name("git", "git_status") == "git__git_status"
    assert split_tool_name("git__git_status") == ("git", "git_status")
    assert split_tool_name("read_file") is None
    assert tool_name("git", "has.dot") is None
    assert tool_name("git", "x" * 70) is None


def test_results_read_as_text_and_binary_parts_become_artifacts(tmp_path: Path) -> None:
    pytest.importorskip("mcp")
    import mcp_types as types

    from crewboard.runner.mcp import render

    saved: list[tuple[bytes, str]] = []

    def save(data: bytes, mime: str) -> str:
        saved.append((data, mime))
        return f"part-{len(saved)}.png"

    result = types.CallToolResult(
        content=[
            types.TextContent(text="hello"),
            types.ImageContent(data=base64.b64encode(b"PNGDATA").decode(), mime_type="image/png"),
            types.EmbeddedResource(
                resource=types.TextResourceContents(uri="file:///a.txt", text="inside")
            ),
            types.ResourceLink(uri="https://example.test/x", name="x"),
        ]
    )
    assert render(result, save).splitlines() == [
        "hello",
        "[image (image/png, 7 bytes) saved as the artifact 'part-1.png']",
        "[resource file:///a.txt]",
        "inside",
        "[resource link https://example.test/x: x]",
    ]
    assert saved == [(b"PNGDATA", "image/png")]
    structured = types.CallToolResult(content=[], structured_content={"a": 1})
    assert render(structured, save) == '{"a": 1}'
