"""MCP tool servers as the administrator configures them (``[mcp.NAME]`` in
``crewboard.toml``) and as a runner's spec carries them: :class:`McpServer`.

Neutral ground: :mod:`crewboard.config` reads the tables, the launcher and the
chat turns put the servers a run's presets name into its spec, and the
runner (:mod:`crewboard.runner.mcp`) starts them. Nothing here imports the
``mcp`` SDK; a runner without MCP servers never imports this module either.

A server is either a stdio command (``command``, started inside the shell's
bubblewrap sandbox, see :mod:`crewboard.runner.tools.sandbox`) or a
streamable-HTTP endpoint (``url``). Its tools reach the model as
``NAME__tool`` (:func:`tool_name`).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping
from typing import Any

# A server name becomes the first part of a tool name (NAME__tool), which
# providers cap at 64 characters of [A-Za-z0-9_-].
SERVER_NAME = re.compile(r"^[A-Za-z0-9-]{1,24}$")
TOOL_SEPARATOR = "__"
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_START_TIMEOUT_S = 30.0
DEFAULT_CALL_TIMEOUT_S = 60.0
DEFAULT_OUTPUT_BYTES = 65536
_KEYS = (
    "command",
    "url",
    "env",
    "cwd",
    "headers",
    "network",
    "read_only",
    "allow_private",
    "start_timeout_s",
    "call_timeout_s",
    "output_bytes",
)


class McpError(ValueError):
    """A server table (or a spec's ``mcp`` object) is malformed: the
    administrator's fault (or the launcher's)."""


def tool_name(server: str, tool: str) -> str | None:
    """The name the model calls ``tool`` of ``server`` by, or None when the
    two cannot make a valid function name (too long, odd characters)."""
    name = f"{server}{TOOL_SEPARATOR}{tool}"
    return name if _TOOL_NAME.match(name) else None


def split_tool_name(name: str) -> tuple[str, str] | None:
    """``(server, tool)`` of a ``NAME__tool`` name, or None for another name."""
    server, sep, tool = name.partition(TOOL_SEPARATOR)
    if not sep or not tool or not SERVER_NAME.match(server):
        return None
    return server, tool


def granted(servers: Iterable[str], grants: Iterable[str], server: str, tool: str) -> bool:
    """Whether a preset naming ``servers`` (and, if any, the ``grants``
    "NAME.tool") may call ``tool`` of ``server``."""
    if server not in servers:
        return False
    grants = tuple(grants)
    return not grants or f"{server}.{tool}" in grants


class McpServer:
    """One ``[mcp.NAME]`` table. ``env`` and ``headers`` hold values read
    from the named variables at start (secrets: never in a repr, never in
    :meth:`public`); ``read_only`` are host folders the sandbox shows the
    server read-only (where its program is installed)."""

    __slots__ = (
        "allow_private",
        "call_timeout_s",
        "command",
        "cwd",
        "env",
        "headers",
        "name",
        "network",
        "output_bytes",
        "read_only",
        "start_timeout_s",
        "url",
    )
    name: str
    command: tuple[str, ...]
    url: str | None
    env: dict[str, str]
    cwd: str | None
    headers: dict[str, str]
    network: bool
    read_only: tuple[str, ...]
    allow_private: bool
    start_timeout_s: float
    call_timeout_s: float
    output_bytes: int

    def __init__(
        self,
        name: str,
        *,
        command: Iterable[str] = (),
        url: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        headers: Mapping[str, str] | None = None,
        network: bool = False,
        read_only: Iterable[str] = (),
        allow_private: bool = False,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
        output_bytes: int = DEFAULT_OUTPUT_BYTES,
    ) -> None:
        values = {
            "name": name,
            "command": tuple(command),
            "url": url,
            "env": dict(env or {}),
            "cwd": cwd,
            "headers": dict(headers or {}),
            "network": network,
            "read_only": tuple(read_only),
            "allow_private": allow_private,
            "start_timeout_s": float(start_timeout_s),
            "call_timeout_s": float(call_timeout_s),
            "output_bytes": int(output_bytes),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)
        _check(self)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("McpServer is frozen")

    def __eq__(self, other: object) -> bool:
        return type(other) is McpServer and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"McpServer({self.public()!r})"

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"

    def public(self) -> dict[str, Any]:
        """What an administrator sees: the table without secret values."""
        out: dict[str, Any] = {"name": self.name, "transport": self.transport}
        if self.url:
            out.update(url=self.url, headers=sorted(self.headers), allowPrivate=self.allow_private)
        else:
            out.update(
                command=list(self.command),
                cwd=self.cwd,
                env=sorted(self.env),
                network=self.network,
                readOnly=list(self.read_only),
            )
        out.update(
            startTimeoutS=self.start_timeout_s,
            callTimeoutS=self.call_timeout_s,
            outputBytes=self.output_bytes,
        )
        return out

    def to_json(self) -> dict[str, Any]:
        """The server as a runner's spec carries it (secrets included: the
        spec reaches the runner on a pipe)."""
        return {
            "name": self.name,
            "command": list(self.command),
            "url": self.url,
            "env": dict(self.env),
            "cwd": self.cwd,
            "headers": dict(self.headers),
            "network": self.network,
            "readOnly": list(self.read_only),
            "allowPrivate": self.allow_private,
            "startTimeoutS": self.start_timeout_s,
            "callTimeoutS": self.call_timeout_s,
            "outputBytes": self.output_bytes,
        }

    @classmethod
    def from_json(cls, raw: Any) -> McpServer:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise McpError("must be an object with a name")
        try:
            return cls(
                raw["name"],
                command=_strings(raw.get("command") or [], "command"),
                url=raw.get("url"),
                env=_string_map(raw.get("env") or {}, "env"),
                cwd=raw.get("cwd"),
                headers=_string_map(raw.get("headers") or {}, "headers"),
                network=raw.get("network", False),
                read_only=_strings(raw.get("readOnly") or [], "readOnly"),
                allow_private=raw.get("allowPrivate", False),
                start_timeout_s=raw.get("startTimeoutS", DEFAULT_START_TIMEOUT_S),
                call_timeout_s=raw.get("callTimeoutS", DEFAULT_CALL_TIMEOUT_S),
                output_bytes=raw.get("outputBytes", DEFAULT_OUTPUT_BYTES),
            )
        except (TypeError, ValueError) as exc:
            raise McpError(str(exc)) from exc


def _strings(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise McpError(f"{key} must be a list of non-empty strings")
    return value


def _string_map(value: Any, key: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise McpError(f"{key} must map names to strings")
    return value


def _positive(value: Any, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise McpError(f"{key} must be a positive number")


def _check(server: McpServer) -> None:
    if not SERVER_NAME.match(server.name):
        raise McpError(
            "a server name is 1 to 24 letters, digits or '-' (it starts its tools' names)"
        )
    if bool(server.command) == bool(server.url):
        raise McpError('needs either command = ["program", ...] or url = "https://..."')
    if server.url is not None and (
        not isinstance(server.url, str) or not re.match(r"^https?://[^/\s]+", server.url)
    ):
        raise McpError("url must be an http:// or https:// URL")
    if server.command and not os.path.isabs(server.command[0]):
        raise McpError(f"command: {server.command[0]!r} must be an absolute path")
    if server.cwd is not None and (
        not isinstance(server.cwd, str)
        or os.path.isabs(server.cwd)
        or ".." in server.cwd.split("/")
    ):
        raise McpError("cwd must be a folder inside the run's workspace (a relative path)")
    for folder in server.read_only:
        if not os.path.isabs(folder) or os.path.normpath(folder) == "/":
            raise McpError(f"read_only: {folder!r} must be an absolute path other than /")
    for key in ("network", "allow_private"):
        if not isinstance(getattr(server, key), bool):
            raise McpError(f"{key} must be true or false")
    for key in ("start_timeout_s", "call_timeout_s", "output_bytes"):
        _positive(getattr(server, key), key)


def parse_tables(
    table: Any, environ: Mapping[str, str], home: str, read_secret: Any
) -> dict[str, McpServer]:
    """The ``[mcp]`` table of ``crewboard.toml``: servers by name. ``env``
    and ``headers`` name variables, read here from ``environ`` (or their
    ``NAME_FILE`` through ``read_secret``); a variable that is not set is
    left out. A ``read_only`` folder may not hold the data ``home``."""
    if not isinstance(table, dict):
        raise McpError("[mcp] must be a table of [mcp.NAME] tables")
    servers = {}
    for name, entry in table.items():
        where = f"[mcp.{name}]"
        if not isinstance(entry, dict):
            raise McpError(f"{where} must be a table")
        unknown = sorted(k for k in entry if k not in _KEYS)
        if unknown:
            raise McpError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_KEYS)})")
        env_names = entry.get("env", [])
        if not isinstance(env_names, list) or not all(isinstance(n, str) for n in env_names):
            raise McpError(f"{where}: env must be a list of variable names")
        headers = entry.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise McpError(f"{where}: headers must map header names to variable names")
        command = entry.get("command", [])
        if not isinstance(command, list) or not all(isinstance(p, str) and p for p in command):
            raise McpError(f"{where}: command must be a list of non-empty strings")
        if command and not os.path.isabs(command[0]):
            # Found on the server's PATH now: inside the sandbox a program is
            # reached by its full path.
            found = shutil.which(command[0], path=environ.get("PATH", os.defpath))
            if found is None:
                raise McpError(f"{where}: command {command[0]!r} is not on the PATH")
            command = [found, *command[1:]]

        def read(variable: str) -> str | None:
            return environ.get(variable) or read_secret(variable, environ)

        env = {n: v for n in env_names if (v := read(n)) is not None}
        header_values = {h: v for h, n in headers.items() if (v := read(n)) is not None}
        read_only = entry.get("read_only", [])
        if not isinstance(read_only, list) or not all(isinstance(p, str) for p in read_only):
            raise McpError(f"{where}: read_only must be a list of folders")
        for folder in read_only:
            norm = os.path.normpath(folder)
            if os.path.isabs(folder) and (home + "/").startswith(norm.rstrip("/") + "/"):
                raise McpError(f"{where}: read_only {folder!r} holds the data home {home}")
        try:
            servers[name] = McpServer(
                name,
                command=command,
                url=entry.get("url"),
                env=env,
                cwd=entry.get("cwd"),
                headers=header_values,
                network=entry.get("network", False),
                read_only=[os.path.normpath(p) for p in read_only],
                allow_private=entry.get("allow_private", False),
                start_timeout_s=entry.get("start_timeout_s", DEFAULT_START_TIMEOUT_S),
                call_timeout_s=entry.get("call_timeout_s", DEFAULT_CALL_TIMEOUT_S),
                output_bytes=entry.get("output_bytes", DEFAULT_OUTPUT_BYTES),
            )
        except (McpError, TypeError, ValueError) as exc:
            raise McpError(f"{where}: {exc}") from exc
    return dict(sorted(servers.items()))


def variable_names(table: Any) -> tuple[str, ...]:
    """The variables the ``[mcp]`` tables name (secrets a server process
    takes out of its environment)."""
    names: list[str] = []
    if isinstance(table, dict):
        for entry in table.values():
            if isinstance(entry, dict):
                names += [n for n in entry.get("env", []) if isinstance(n, str)]
                headers = entry.get("headers", {})
                if isinstance(headers, dict):
                    names += [n for n in headers.values() if isinstance(n, str)]
    return tuple(dict.fromkeys(names))


def servers_from_json(value: Any) -> dict[str, McpServer]:
    """A spec's ``mcp`` object (servers by name)."""
    if not isinstance(value, dict):
        raise McpError("mcp: must be an object of servers by name")
    servers = {}
    for name, entry in value.items():
        try:
            server = McpServer.from_json(entry)
        except McpError as exc:
            raise McpError(f"mcp.{name}: {exc}") from exc
        if server.name != name:
            raise McpError(f"mcp.{name}: its name is {server.name!r}")
        servers[name] = server
    return servers


def run_servers(
    configured: Mapping[str, McpServer], agents: Mapping[str, Mapping[str, Any]]
) -> dict[str, McpServer]:
    """The servers a run's presets (as :func:`crewboard.agents.run_agents`
    gives them) name; McpError for one the administrator did not configure."""
    needed: dict[str, McpServer] = {}
    for agent in agents.values():
        for name in agent.get("mcp") or ():
            if name not in configured:
                raise McpError(
                    f"the preset {agent.get('id')!r} names the MCP server {name!r}, which "
                    "is not configured ([mcp.NAME] in crewboard.toml)"
                )
            needed[name] = configured[name]
    return needed
