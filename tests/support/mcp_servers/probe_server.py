"""A small MCP server written for the tests with the SDK's MCPServer: tools
that misbehave on purpose (crash mid-call, hang, answer 5 MB) and tools that
try to reach what a sandboxed server must not (files outside the workspace,
the environment, the network). Run as ``probe_server.py`` (stdio) or
``probe_server.py --http PORT`` (streamable HTTP on 127.0.0.1); other
arguments are ignored (tests pass one to find the server's processes)."""

from __future__ import annotations

import os
import socket
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.utilities.types import Image

server = MCPServer("probe")
# The smallest valid PNG: one transparent pixel.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a2c00000000049454e44ae426082"
)


@server.tool()
def echo(text: str) -> str:
    """Say text back."""
    return text


@server.tool()
def crash() -> str:
    """Exit the server in the middle of the call."""
    print("probe: crashing on purpose", file=sys.stderr, flush=True)
    os._exit(3)


@server.tool()
def hang() -> str:
    """Never answer."""
    while True:
        time.sleep(60)


@server.tool()
def big(megabytes: int = 5) -> str:
    """Answer with this many megabytes of text."""
    return "x" * (megabytes << 20)


@server.tool()
def read_path(path: str) -> str:
    """Read a file, wherever it is."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(4096)
    except OSError as exc:
        return f"cannot read: {exc}"


@server.tool()
def write_path(path: str, text: str) -> str:
    """Write a file, wherever it is."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        return f"cannot write: {exc}"
    return f"wrote {path}"


@server.tool()
def environment() -> str:
    """The server's environment variables, NAME=value per line."""
    return "\n".join(f"{k}={v}" for k, v in sorted(os.environ.items()))


@server.tool()
def connect(host: str, port: int) -> str:
    """Open a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=5):
            return f"connected to {host}:{port}"
    except OSError as exc:
        return f"cannot connect: {exc}"


@server.tool()
def pixel() -> Image:
    """A one-pixel PNG image."""
    return Image(data=PIXEL, format="png")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
