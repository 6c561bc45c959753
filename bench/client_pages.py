"""Benchmark: the browser client's first page load and time to first streamed
token, in Debian's headless Chromium against a real ``crewboard web``.

First page load: each page is opened ``--loads`` times, each time in a new
browser context (an empty cache, as a first visit), at 1366 and 375 px.
Timed from navigation start to the moment the page is usable (its ready
mark below), with the bytes it fetched (every resource's transfer size).

Time to first streamed token: on the chat page, ``--turns`` messages are
sent one after another (Enter in the composer, as a user does). Timed from
the key press to the first text of the answer on screen (rendered as
Markdown by markdown.js), and to the finished answer (the server's HTML).
The model is the built-in offline one, so the time is crewboard's own: the
POST, the chat runner's start (forked from the web's template), the log
hub's tail, the SSE frame and the page's rendering.

Usage: ``.venv/bin/python bench/client_pages.py [--loads 15] [--turns 20]
[--out FILE.json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from crewboard.board import db
from crewboard.board import users as board_users
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.home import Home
from crewboard.passwords import Passwords
from percentiles import pct
from sse_fanout import start_web

CHROMIUM = "/usr/bin/chromium"
EMAIL = "reader@example.test"
PASSWORD = "bench password 1"
WIDTHS = (1366, 375)

# Each page and the mark that says it is usable.
PAGES = {
    "/chat": "#send:not([disabled])",
    "/board": '#feed-state[data-state="live"]',
    "/templates": "#list-loading[hidden]",
    "/profile": "#tokens-empty:not([hidden])",  # a new user has no tokens
}

LOAD = """async ([url, ready]) => {
  const started = performance.now();
  const wait = () => new Promise((resolve) => {
    const check = () => (document.querySelector(ready) ? resolve() : requestAnimationFrame(check));
    check();
  });
  await wait();
  const nav = performance.getEntriesByType("navigation")[0];
  const bytes = performance.getEntriesByType("resource").reduce((n, r) => n + r.transferSize, 0)
    + (nav ? nav.transferSize : 0);
  return { readyMs: performance.now(), domContentLoadedMs: nav.domContentLoadedEventEnd, bytes };
}"""

TURN = """async (text) => {
  const box = document.getElementById("message");
  const turns = () => document.querySelectorAll(".turn").length;
  const before = turns();
  box.value = text;
  const sent = performance.now();
  box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
  const until = (test) => new Promise((resolve) => {
    const check = () => (test() ? resolve(performance.now() - sent) : setTimeout(check, 1));
    check();
  });
  const turn = () => document.querySelectorAll(".turn")[before];
  const answered = () => turn().querySelector(".answer")?.textContent.trim();
  const firstToken = await until(() => turns() > before && answered());
  const finished = await until(() => turn().querySelector(".answer.rendered")
    && !document.getElementById("send").disabled);
  return { firstToken, finished };
}"""


def prepare(home_dir: Path) -> None:
    home = Home(home_dir).ensure()
    home.secret_key()
    config = Config.load(home_dir, environ={})
    passwords = Passwords(config.argon2_time_cost, config.argon2_memory_kib)
    db.connect(home.board_db)
    try:
        board_users.create_user(EMAIL, passwords.hash(PASSWORD), is_admin=False, now=utcnow())
    finally:
        db.close()


def signed_in_context(browser, url: str, width: int):
    context = browser.new_context(base_url=url, viewport={"width": width, "height": 800})
    response = context.request.post(
        "/auth/login", data={"email": EMAIL, "password": PASSWORD}, headers={"Origin": url}
    )
    assert response.ok, response.text()
    return context


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(pct(values, 50), 1), "p90": round(pct(values, 90), 1)}


def measure_loads(browser, url: str, loads: int) -> list[dict]:
    rows = []
    for width in WIDTHS:
        for path, ready in PAGES.items():
            ready_ms, dcl_ms, sizes = [], [], []
            for _ in range(loads):
                context = signed_in_context(browser, url, width)
                page = context.new_page()
                page.goto(path, wait_until="commit")
                result = page.evaluate(LOAD, [path, ready])
                ready_ms.append(result["readyMs"])
                dcl_ms.append(result["domContentLoadedMs"])
                sizes.append(result["bytes"])
                context.close()
            rows.append(
                {
                    "page": path,
                    "width": width,
                    "ready_ms": summary(ready_ms),
                    "dom_content_loaded_ms": summary(dcl_ms),
                    "kib": round(pct(sizes, 50) / 1024, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def measure_turns(browser, url: str, turns: int) -> dict:
    context = signed_in_context(browser, url, 1366)
    page = context.new_page()
    page.goto("/chat")
    page.wait_for_selector("#send:not([disabled])")
    first, finished = [], []
    for n in range(turns + 2):
        result = page.evaluate(
            TURN, f"Turn {n}: **bold**, `code` and\n\n```python\nprint({n})\n```"
        )
        if n >= 2:  # two warm-up turns
            first.append(result["firstToken"])
            finished.append(result["finished"])
    context.close()
    row = {"turns": turns, "first_token_ms": summary(first), "finished_ms": summary(finished)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=15)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home_dir = Path(tmp) / "home"
        prepare(home_dir)
        process, url = start_web(home_dir, Path(tmp) / "web.log")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
                )
                loads = measure_loads(browser, url, args.loads)
                turns = measure_turns(browser, url, args.turns)
                browser.close()
        finally:
            process.terminate()
            process.wait(30)
    result = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "loads": loads,
        "turns": turns,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    json.dump(result, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
