"""Tool http_get: caps on scheme, size and time, and refusal of internal
addresses before any connection. Only loopback is ever connected to."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from crewboard.netguard import AllowList, classify
from crewboard.runner.tools.base import ToolError, system_resolver
from crewboard.runner.tools.http_get import TOOL
from tests.support.runner import tool_context

NAMES = {
    "intranet.test": ["10.1.2.3"],
    "metadata.test": ["169.254.169.254"],
    "ula.test": ["fd00::1"],
    "mixed.test": ["93.184.216.34", "192.168.1.1"],
    "rebind.test": ["127.0.0.1"],
}


def fake_resolver(host: str, port: int) -> list[str]:
    if host not in NAMES:
        return system_resolver(host, port)
    return NAMES[host]


class _Pages(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/redirect-inside":
            self._send(302, b"", {"Location": "http://10.0.0.1/admin"})
        elif self.path == "/redirect-ok":
            self._send(302, b"", {"Location": "/page"})
        elif self.path == "/big":
            self._send(200, b"y" * 50_000)
        elif self.path == "/slow":
            # Holds the request, unanswered, until the test is over: later
            # than any timeout.
            self.server.test_over.wait(30)  # type: ignore[attr-defined]
        elif self.path == "/binary":
            self._send(200, b"\x89PNG....", {"Content-Type": "image/png"})
        else:
            self._send(200, f"hello from {self.headers['Host']}".encode())

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    server.daemon_threads = True
    server.test_over = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.test_over.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every host the tool connected to (recorded at the transport)."""
    seen: list[str] = []
    real = httpx.HTTPTransport.handle_request

    def spy(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        assert ipaddress.ip_address(request.url.host).is_loopback, "only loopback, ever"
        return real(self, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", spy)
    return seen


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://localhost:8080/", "loopback"),
        ("http://127.0.0.1/", "loopback"),
        ("http://[::1]:9000/x", "loopback"),
        ("http://intranet.test/", "private"),
        ("http://metadata.test/latest/meta-data/", "link-local"),
        ("https://ula.test/", "private"),
        ("http://mixed.test/", "private"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://100.64.0.1/", "CGNAT"),
        ("http://240.0.0.1/", "reserved"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fe80::1%25eth0]/", "link-local"),
        ("http://[fc00::1]/", "private"),
        ("http://[fec0::1]/", "private"),
        ("http://[::ffff:127.0.0.1]:8000/", "loopback"),
        ("http://[64:ff9b::7f00:1]/", "loopback"),
        ("http://[2002:a00:1::1]/", "private"),
        ("http://[::]/", "unspecified"),
        ("http://2130706433/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://localhost./", "loopback|cannot resolve"),
    ],
)
def test_internal_targets_are_refused_before_connecting(
    tmp_path: Path, connections: list[str], url: str, why: str
) -> None:
    ctx = tool_context(tmp_path, resolver=fake_resolver)
    with pytest.raises(ToolError, match=why):
        TOOL.run({"url": url}, ctx)
    assert connections == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/x", "gopher://a/", "//x"])
def test_only_http_and_https(tmp_path: Path, connections: list[str], url: str) -> None:
    with pytest.raises(ToolError, match=r"only http and https|has no host"):
        TOOL.run({"url": url}, tool_context(tmp_path, resolver=fake_resolver))
    assert connections == []


def test_the_allow_list_lets_an_operator_reach_a_named_internal_host(
    tmp_path: Path, site: str, connections: list[str]
) -> None:
    ctx = tool_context(tmp_path, resolver=fake_resolver, http_allow=("127.0.0.0/8",))
    text = TOOL.run({"url": f"http://{site}/page"}, ctx)
    assert text.startswith("HTTP 200 OK")
    assert f"hello from {site}" in text
    port = site.split(":")[1]
    by_name = tool_context(tmp_path / "b", resolver=fake_resolver, http_allow=("localhost",))
    assert "HTTP 200" in TOOL.run({"url": f"http://localhost:{port}/page"}, by_name)


def test_it_connects_to_the_vetted_address_keeping_the_host_name(
    tmp_path: Path, site: str, connections: list[str]
) -> None:
    port = site.split(":")[1]
    ctx = tool_context(tmp_path, resolver=fake_resolver, http_allow=("127.0.0.1/32",))
    text = TOOL.run({"url": f"http://rebind.test:{port}/page"}, ctx)
    assert f"hello from rebind.test:{port}" in text
    assert connections == ["127.0.0.1"]


def test_each_redirect_is_vetted_again(tmp_path: Path, site: str, connections: list[str]) -> None:
    ctx = tool_context(tmp_path, resolver=fake_resolver, http_allow=("127.0.0.1",))
    assert "hello from" in TOOL.run({"url": f"http://{site}/redirect-ok"}, ctx)
    with pytest.raises(ToolError, match=r"10\.0\.0\.1, a private address"):
        TOOL.run({"url": f"http://{site}/redirect-inside"}, ctx)
    assert set(connections) == {"127.0.0.1"}


def test_size_time_and_type_caps(tmp_path: Path, site: str, connections: list[str]) -> None:
    ctx = tool_context(
        tmp_path,
        resolver=fake_resolver,
        http_allow=("127.0.0.1",),
        http_max_bytes=1000,
        http_timeout_s=0.4,
    )
    big = TOOL.run({"url": f"http://{site}/big"}, ctx)
    assert "[body cut at 1000 bytes]" in big and "y" * 1000 in big and "y" * 1001 not in big
    assert "not shown" in TOOL.run({"url": f"http://{site}/binary"}, ctx)
    with pytest.raises(ToolError, match="timed out"):
        TOOL.run({"url": f"http://{site}/slow"}, ctx)


def test_classify_and_allow_list() -> None:
    assert classify(ipaddress.ip_address("93.184.216.34")) is None
    assert classify(ipaddress.ip_address("2606:4700::1111")) is None
    assert classify(ipaddress.ip_address("172.16.5.4")) == "private"
    assert classify(ipaddress.ip_address("fe80::1")) == "link-local"
    allow = AllowList.parse(["10.0.0.0/8", "Wiki.Internal."])
    assert allow.allows("x", ipaddress.ip_address("10.9.9.9"))
    assert allow.allows("wiki.internal", ipaddress.ip_address("192.168.0.1"))
    assert not allow.allows("other", ipaddress.ip_address("192.168.0.1"))
