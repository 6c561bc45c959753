"""Tool ``http_get``: fetch a web page or API over http(s) with caps on size,
time and scheme, refusing internal addresses (see :mod:`crewboard.netguard`).

Each hop (redirects are followed by hand, at most five) is vetted and then
connected to at the vetted address, with the original host in ``Host`` and in
TLS's server name, so certificates are still checked against the name.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urljoin, urlsplit

from crewboard.netguard import AddressRefused, AllowList, vet
from crewboard.runner.tools.base import Tool, ToolContext, ToolError, arg_str, clip, params

MAX_REDIRECTS = 5
_TEXTUAL = ("text/", "json", "xml", "javascript", "yaml", "csv")


def http_get(args: dict[str, Any], ctx: ToolContext) -> str:
    import httpx

    url = arg_str(args, "url").strip()
    limits = ctx.limits
    allow = AllowList.parse(limits.http_allow)
    deadline = time.monotonic() + limits.http_timeout_s
    timeout = httpx.Timeout(limits.http_timeout_s, connect=min(10.0, limits.http_timeout_s))
    with httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise ToolError(f"{url!r}: only http and https URLs can be fetched")
            if not parts.hostname:
                raise ToolError(f"{url!r} has no host")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                address = vet(parts.hostname, port, allow, ctx.resolver)
            except AddressRefused as exc:
                raise ToolError(str(exc)) from exc
            target = httpx.URL(url).copy_with(host=str(address))
            headers = {
                "Host": parts.netloc.rsplit("@", 1)[-1],
                "User-Agent": "crewboard-http_get/1",
            }
            extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
            try:
                with client.stream(
                    "GET", target, headers=headers, extensions=extensions
                ) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    return _render(url, response, limits.http_max_bytes, deadline, ctx)
            except httpx.TimeoutException as exc:
                raise ToolError(f"{url}: timed out after {limits.http_timeout_s:g} s") from exc
            except httpx.HTTPError as exc:
                raise ToolError(f"{url}: {exc or type(exc).__name__}") from exc
    raise ToolError(f"{url}: more than {MAX_REDIRECTS} redirects")


def _render(url: str, response: Any, max_bytes: int, deadline: float, ctx: ToolContext) -> str:
    body = bytearray()
    cut = False
    for piece in response.iter_bytes():
        body += piece
        if len(body) > max_bytes:
            del body[max_bytes:]
            cut = True
            break
        if time.monotonic() > deadline:
            raise ToolError(f"{url}: the download took longer than {ctx.limits.http_timeout_s:g} s")
    content_type = response.headers.get("content-type", "")
    head = (
        f"HTTP {response.status_code} {response.reason_phrase}\n"
        f"URL: {url}\nContent-Type: {content_type}\n"
    )
    if cut:
        head += f"[body cut at {max_bytes} bytes]\n"
    if body and content_type and not any(t in content_type.lower() for t in _TEXTUAL):
        return head + f"\n[{len(body)} bytes of {content_type}, not shown]"
    text = body.decode(response.encoding or "utf-8", errors="replace")
    return clip(head + "\n" + text, ctx.limits.tool_output_bytes)


TOOL = Tool(
    name="http_get",
    description=(
        "Fetch a public web page or API with HTTP GET and return its status, type and text "
        "(size and time are capped; internal addresses are refused)."
    ),
    parameters=params(["url"], url={"type": "string", "description": "An http:// or https:// URL"}),
    run=http_get,
)
