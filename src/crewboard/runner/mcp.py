"""MCP tool servers in a run: start the servers the run's presets name, list
their tools for the model as ``NAME__tool`` function tools, call them, and
stop them with the run.

Everything MCP goes through the official ``mcp`` SDK (its ``stdio_client``,
``streamable_http_client`` and ``ClientSession``); this module only decides
where a server runs and how its answers read. The SDK is async (anyio): the
sessions live on an event loop in a thread of their own (an anyio blocking
portal, on asyncio so that the loop thread, which lives as long as the run,
is the parent bubblewrap's ``--die-with-parent`` watches), and the loop's
tool threads call into it. The runner imports this module only when its
spec names a server, so a run without MCP loads none of it.

- A stdio server runs inside the shell's bubblewrap sandbox
  (:mod:`crewboard.runner.tools.sandbox`): the run's workspace is its only
  writable folder, its environment is built from nothing plus the variables
  its table names, its network is off unless ``network = true``, and it dies
  with the runner.
- An HTTP server is reached only at a public address, unless the operator's
  allow-list (``CREWBOARD_HTTP_ALLOW``) names it or its table says
  ``allow_private = true``; every request is vetted (:mod:`.tools.netguard`).
- Start-up and each call have their own timeouts; a server that fails to
  start ends the run with an error naming it, a call that crashes the server,
  hangs or fails comes back to the model as an error result.
- Text and embedded text resources read as text; images, audio and binary
  resources are saved as artifacts, and the result names them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from crewboard.mcpspec import McpServer, granted, split_tool_name, tool_name
from crewboard.runner.spec import AgentDef, Limits
from crewboard.runner.tools import sandbox
from crewboard.runner.tools.base import ToolContext, ToolError
from crewboard.runner.tools.save_artifact import write_artifact

# How much of a server's stderr an error quotes.
_STDERR_TAIL = 1500
_MIME_SUFFIX = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/svg+xml": "svg",
    "audio/wav": "wav",
    "audio/mpeg": "mp3",
    "application/pdf": "pdf",
    "application/json": "json",
    "text/plain": "txt",
}


class ServerFailed(Exception):
    """A server could not be started, or stopped answering (the server's or
    its table's fault, not the model's)."""


class _Connection:
    """One running server: its session, its tools, and how to stop it."""

    def __init__(self, server: McpServer, errlog: Any) -> None:
        self.server = server
        self.errlog = errlog
        self.session: ClientSession | None = None
        self.tools: dict[str, types.Tool] = {}
        self.skipped: list[str] = []
        self.stop = anyio.Event()
        self.closed_reason: str | None = None

    def stderr_tail(self) -> str:
        if self.errlog is None:
            return ""
        fd = self.errlog.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - _STDERR_TAIL)
        return os.pread(fd, size - start, start).decode(errors="replace").strip()

    def describe_failure(self, what: str) -> str:
        tail = self.stderr_tail()
        return f"{what}; its last output: {tail}" if tail else what


async def list_all_tools(session: ClientSession) -> list[types.Tool]:
    """Every tool of a server, following its pages."""
    tools: list[types.Tool] = []
    cursor: str | None = None
    while True:
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        result = await session.list_tools(params=params)
        tools += result.tools
        cursor = result.next_cursor
        if not cursor:
            return tools


def stdio_parameters(server: McpServer, workspace: Path, limits: Limits) -> StdioServerParameters:
    """How the SDK starts a stdio server: bubblewrap around the server's
    command, with the workspace as its only writable folder."""
    bwrap = sandbox.find_bwrap(limits)
    cwd = (workspace / server.cwd) if server.cwd else workspace
    cwd.mkdir(parents=True, exist_ok=True)
    env = sandbox.tool_env(workspace, sandboxed=True)
    env.update(server.env)
    env["PWD"] = str(cwd)
    wrapper = sandbox.sandbox_argv(
        bwrap,
        workspace,
        limits,
        env,
        network=server.network,
        read_only=server.read_only,
        chdir=cwd,
    )
    argv = [*wrapper, *sandbox.limits_argv(limits, sandboxed=True), *server.command]
    # The SDK merges its own few inherited variables (HOME, PATH, ...) into
    # this; bubblewrap's --clearenv drops them all before the server starts.
    return StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=str(workspace))


@asynccontextmanager
async def open_transport(
    server: McpServer, workspace: Path, limits: Limits, errlog: Any, resolver: Any
) -> AsyncIterator[Any]:
    """The SDK transport (read and write streams) to one server."""
    if server.url is None:
        async with stdio_client(stdio_parameters(server, workspace, limits), errlog=errlog) as t:
            yield t
        return
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    from crewboard.netguard import AddressRefused, AllowList, vet

    allow = AllowList.parse(limits.http_allow)

    async def check(request: httpx2.Request) -> None:
        if server.allow_private:
            return
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        try:
            await anyio.to_thread.run_sync(vet, host, port, allow, resolver)
        except AddressRefused as exc:
            raise ToolError(str(exc)) from exc

    await check(httpx2.Request("POST", server.url))
    timeout = httpx2.Timeout(server.call_timeout_s, read=max(300.0, server.call_timeout_s))
    client = httpx2.AsyncClient(
        headers=server.headers,
        timeout=timeout,
        trust_env=False,
        event_hooks={"request": [check]},
    )
    async with client, streamable_http_client(server.url, http_client=client) as t:
        yield t


class McpHub:
    """The MCP servers of one run, reached from the loop's threads."""

    def __init__(self, servers: dict[str, McpServer], ctx: ToolContext) -> None:
        self.servers = servers
        self.ctx = ctx
        self.connections: dict[str, _Connection] = {}
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._errlogs: list[Any] = []

    # -- start and stop ---------------------------------------------------

    def start(self) -> None:
        """Start every server (all at once) and list its tools; ServerFailed
        names the first that could not start (the others are stopped again)."""
        self._portal_cm = anyio.from_thread.start_blocking_portal("asyncio")
        self._portal = self._portal_cm.__enter__()
        failures: dict[str, ServerFailed] = {}
        started: dict[str, _Connection] = {}

        def start_one(server: McpServer, connection: _Connection) -> None:
            assert self._portal is not None
            try:
                self._portal.start_task(self._serve, connection, name=f"mcp {server.name}")
            except ServerFailed as exc:
                failures[server.name] = exc
            except Exception as exc:
                failures[server.name] = ServerFailed(
                    connection.describe_failure(
                        f"the MCP server {server.name!r} did not start: {_why(exc)}"
                    )
                )
            else:
                started[server.name] = connection

        threads = []
        for server in self.servers.values():
            # The server's stderr, quoted when it fails; closed in close().
            errlog = tempfile.TemporaryFile("w+") if server.url is None else None  # noqa: SIM115
            if errlog is not None:
                self._errlogs.append(errlog)
            thread = threading.Thread(
                target=start_one, args=(server, _Connection(server, errlog)), daemon=True
            )
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        self.connections = {name: started[name] for name in self.servers if name in started}
        failed = [failures[name] for name in self.servers if name in failures]
        if failed:
            self.close()
            raise failed[0]

    async def _serve(
        self, connection: _Connection, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        """One server's life: connect, initialize, list the tools, then wait
        until the run ends. Its start-up has ``start_timeout_s``."""
        server = connection.server
        with anyio.CancelScope(deadline=anyio.current_time() + server.start_timeout_s) as scope:
            async with AsyncExitStack() as stack:
                streams = await stack.enter_async_context(
                    open_transport(
                        server,
                        self.ctx.workspace,
                        self.ctx.limits,
                        connection.errlog,
                        self.ctx.resolver,
                    )
                )
                session = await stack.enter_async_context(ClientSession(*streams))
                await session.initialize()
                for tool in await list_all_tools(session):
                    if tool_name(server.name, tool.name) is None:
                        connection.skipped.append(tool.name)
                    else:
                        connection.tools[tool.name] = tool
                connection.session = session
                scope.deadline = math.inf
                task_status.started()
                await connection.stop.wait()
        if scope.cancelled_caught and connection.session is None:
            raise ServerFailed(
                connection.describe_failure(
                    f"the MCP server {server.name!r} did not start within "
                    f"{server.start_timeout_s:g} s (start_timeout_s)"
                )
            )

    def close(self) -> None:
        """Stop every server (the SDK closes its stdin, then ends its
        process group) and the event loop."""
        if self._portal is None or self._portal_cm is None:
            return
        portal, self._portal = self._portal, None
        for connection in self.connections.values():
            portal.call(connection.stop.set)
        # A server's own failure while stopping is no failure of the run.
        with contextlib.suppress(Exception):
            self._portal_cm.__exit__(None, None, None)
        for errlog in self._errlogs:
            errlog.close()

    # -- what the model sees ----------------------------------------------

    def schemas(self, agent: AgentDef) -> list[dict[str, Any]]:
        """The function tools ``agent`` is granted, as the model sees them."""
        out = []
        for name in agent.mcp:
            connection = self.connections.get(name)
            if connection is None:
                continue
            for tool in connection.tools.values():
                if not granted(agent.mcp, agent.mcp_tools, name, tool.name):
                    continue
                parameters = dict(tool.input_schema or {})
                parameters.setdefault("type", "object")
                parameters.setdefault("properties", {})
                out.append(
                    {
                        "type": "function",
                        "function": {
                            "name": tool_name(name, tool.name),
                            "description": (tool.description or tool.title or tool.name)[:1024],
                            "parameters": parameters,
                        },
                    }
                )
        return out

    def owns(self, name: str) -> bool:
        """Whether ``name`` is an MCP tool name of this run's servers."""
        parts = split_tool_name(name)
        return parts is not None and parts[0] in self.servers

    def timeout_s(self, name: str) -> float | None:
        parts = split_tool_name(name)
        if parts is None or parts[0] not in self.servers:
            return None
        return self.servers[parts[0]].call_timeout_s

    def output_bytes(self, name: str) -> int | None:
        parts = split_tool_name(name)
        if parts is None or parts[0] not in self.servers:
            return None
        return self.servers[parts[0]].output_bytes

    # -- calls --------------------------------------------------------------

    def call(self, agent: AgentDef, name: str, args: dict[str, Any]) -> tuple[str, bool]:
        """Call ``name`` (``NAME__tool``) for ``agent``: the text the model
        reads and whether it is an error. ToolError for a refusal."""
        parts = split_tool_name(name)
        assert parts is not None
        server_name, tool = parts
        if not granted(agent.mcp, agent.mcp_tools, server_name, tool):
            raise ToolError(f"{name!r} is not one of your tools")
        connection = self.connections.get(server_name)
        if connection is None or tool not in connection.tools:
            raise ToolError(f"the MCP server {server_name!r} has no tool {tool!r}")
        if connection.closed_reason is not None:
            raise ToolError(connection.closed_reason)
        portal = self._portal
        if portal is None:
            raise ToolError("the run's MCP servers are stopped")
        result = portal.call(self._call, connection, tool, args)
        if isinstance(result, str):
            raise ToolError(result)
        text = render(result, self._saver(server_name, tool))
        return text, bool(result.is_error)

    async def _call(
        self, connection: _Connection, tool: str, args: dict[str, Any]
    ) -> types.CallToolResult | str:
        """The call on the event loop; a str is what went wrong."""
        server = connection.server
        assert connection.session is not None
        label = f"{server.name}__{tool}"
        try:
            with anyio.fail_after(server.call_timeout_s):
                result = await connection.session.call_tool(tool, args)
        except TimeoutError:
            return (
                f"{label} did not answer within {server.call_timeout_s:g} s (call_timeout_s); "
                "the call was abandoned"
            )
        except Exception as exc:
            if connection.errlog is not None and _process_gone(exc):
                reason = connection.describe_failure(
                    f"the MCP server {server.name!r} stopped while answering {label}"
                )
                connection.closed_reason = reason
                return reason
            return f"{label} failed: {_why(exc)}"
        if not isinstance(result, types.CallToolResult):
            return f"{label} asked for input, which crewboard cannot give"
        return result

    def _saver(self, server: str, tool: str) -> Callable[[bytes, str], str]:
        """Saves one binary part of a result as an artifact; its name."""

        def save(data: bytes, mime: str) -> str:
            suffix = _MIME_SUFFIX.get(mime.split(";")[0].strip().lower(), "bin")
            stem = f"{server}-{tool}"[:100]
            n = 1
            name = f"{stem}.{suffix}"
            while name in self.ctx.saved_artifacts:
                n += 1
                name = f"{stem}-{n}.{suffix}"
            write_artifact(self.ctx.artifact_dir, name, data)
            self.ctx.saved_artifacts.append(name)
            return name

        return save


def render(result: types.CallToolResult, save: Callable[[bytes, str], str]) -> str:
    """A tool result as the model and the log read it: text parts as text,
    binary parts saved as artifacts and named, structured content as JSON
    when there is nothing else."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent | types.AudioContent):
            kind = "image" if isinstance(block, types.ImageContent) else "audio"
            parts.append(_saved(save, block.data, block.mime_type, kind))
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(f"[resource {resource.uri}]\n{resource.text}")
            else:
                mime = resource.mime_type or "application/octet-stream"
                parts.append(_saved(save, resource.blob, mime, f"resource {resource.uri}"))
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource link {block.uri}: {block.name}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts) if parts else "(no output)"


def _saved(save: Callable[[bytes, str], str], data: str, mime: str, kind: str) -> str:
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        return f"[{kind} ({mime}): not valid base64, left out]"
    try:
        name = save(raw, mime)
    except (ToolError, OSError) as exc:
        return f"[{kind} ({mime}, {len(raw)} bytes) could not be saved: {exc}]"
    return f"[{kind} ({mime}, {len(raw)} bytes) saved as the artifact {name!r}]"


def _why(exc: BaseException) -> str:
    """The innermost useful message of an exception (task groups wrap them)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, ToolError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _process_gone(exc: BaseException) -> bool:
    """Whether a failed call means the server's connection is closed."""
    text = str(exc).lower()
    return "closed" in text or isinstance(
        exc, anyio.ClosedResourceError | anyio.BrokenResourceError | anyio.EndOfStream
    )
