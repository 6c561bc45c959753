"""The browser tests' harness: the web process and the supervisor as real
processes (`crewboard web --port 0` and `crewboard supervisor`, as systemd
runs them) on a data home made for the session, driven by Playwright in
Debian's headless Chromium.

Fixtures:

- ``site`` (session): the running server — ``site.url``, ``site.origin`` —
  with a pool of accounts made before it started.
- ``account``: a fresh, non-admin account no other test has used (so its
  chats and tokens start empty); ``admin_account``: the administrator.
- ``context``: a new browser context (its own cookies) whose pages are
  watched: a request off the server's origin, a console error or an
  uncaught exception fails the test, unless the test expects it with
  ``watch.allow_console(substring)``.
- ``anon_page``: a page in that context, signed in as nobody.
- ``page``: a page signed in as ``account``; ``sign_in(context, account)``
  signs a context in as someone else.

Tests are plain (not async) functions marked ``@pytest.mark.browser``:
Playwright's sync API runs its own event loop. When a test fails, a
screenshot of each of its pages is saved under ``test-artifacts/``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import Account, add_user, make_config
from tests.support import engine, need
from tests.support.procs import Proc

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
# Accounts made before the server starts; each test that asks takes the next.
POOL_SIZE = 100
# Playwright's default waits are 30 s; a page here answers in milliseconds.
TIMEOUT_MS = 10_000
# How much of the server's output a failed test's report shows.
SERVER_LINES = 60


@dataclasses.dataclass
class Site:
    url: str
    home: Path
    admin: Account
    pool: list[Account]
    web: Proc
    supervisor: Proc

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def fresh_account(self) -> Account:
        if not self.pool:
            raise RuntimeError("the browser tests used up their accounts; raise POOL_SIZE")
        return self.pool.pop(0)


def _make_accounts(home: Path, board_url: str | None) -> tuple[Account, list[Account]]:
    from crewboard.board import db
    from crewboard.bootstrap import open_home

    config = make_config(home, **({"database_url": board_url} if board_url else {}))
    open_home(config)
    try:
        admin = add_user(config, "admin@example.test", admin=True)
        pool = [add_user(config, f"user{n}@example.test") for n in range(1, POOL_SIZE + 1)]
    finally:
        db.close()
    return admin, pool


def _crewboard(*args: str, home: Path, board_url: str | None) -> Proc:
    env = {"CREWBOARD_DATABASE_URL": board_url} if board_url else {}
    return Proc([sys.executable, "-m", "crewboard", *args, "--home", str(home)], env=env)


@contextmanager
def serving(home: Path) -> Iterator[Site]:
    """A web process and a supervisor on ``home``, with accounts made; on
    PostgreSQL, on a board of their own that outlives each test's."""
    with engine.shared_database() as board_url:
        admin, pool = _make_accounts(home, board_url)
        with _crewboard("web", "--port", "0", home=home, board_url=board_url) as web:
            with _crewboard("supervisor", home=home, board_url=board_url) as supervisor:
                line = web.wait_for_line(lambda text: "crewboard web serving on " in text)
                url = line.split("serving on ", 1)[1].split(",")[0].strip().rstrip("/") + "/"
                supervisor.wait_for_line(lambda text: "supervisor" in text and " ready" in text)
                yield Site(url, home, admin, pool, web, supervisor)
                supervisor.stop()
            web.stop()


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serving(tmp_path_factory.mktemp("browser") / "home") as served:
        yield served


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    need(os.path.exists(CHROMIUM), f"browser tests need Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "browser tests need the playwright package")
        raise
    with sync_playwright() as playwright:
        # launch() gives the browser a fresh, temporary user-data directory.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def account(site: Site) -> Account:
    return site.fresh_account()


@pytest.fixture
def admin_account(site: Site) -> Account:
    return site.admin


class Watch:
    """What a context's pages did that a test should not let pass."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.problems: list[str] = []
        self.allowed: list[str] = []

    def allow_console(self, substring: str) -> None:
        """Expect console errors containing ``substring`` (e.g. the 401 of a
        refused sign-in, which Chromium reports as a failed resource load)."""
        self.allowed.append(substring)

    def on_request(self, request) -> None:
        url = request.url
        scheme = urlsplit(url).scheme
        if scheme in ("data", "blob", "about"):
            return
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.problems.append(f"request off the origin: {request.method} {url}")

    def on_console(self, message) -> None:
        if message.type != "error":
            return
        text = message.text
        if any(allowed in text for allowed in self.allowed):
            return
        where = message.location.get("url", "") if message.location else ""
        self.problems.append(f"console error: {text} ({where})")

    def on_page_error(self, error) -> None:
        self.problems.append(f"uncaught exception: {error}")

    def watch(self, page) -> None:
        page.on("console", self.on_console)
        page.on("pageerror", self.on_page_error)


class HeldBack:
    """Requests of ``page`` to URLs matching ``pattern`` wait until
    ``release()``: what a slow network does to them."""

    def __init__(self, page, pattern: str) -> None:
        self.held: list = []
        self.releasing = False
        page.route(pattern, self._hold)

    def _hold(self, route) -> None:
        if self.releasing:
            route.continue_()
        else:
            self.held.append(route)

    def release(self) -> None:
        self.releasing = True
        for route in self.held:
            route.continue_()


@pytest.fixture
def watch(site: Site) -> Watch:
    return Watch(site.origin)


@pytest.fixture
def context(browser, site: Site, watch: Watch, request: pytest.FixtureRequest):
    context = browser.new_context(
        base_url=site.url, service_workers="block", viewport={"width": 1280, "height": 800}
    )
    context.set_default_timeout(TIMEOUT_MS)
    context.on("request", watch.on_request)
    context.on("page", watch.watch)
    request.node.browser_context = context
    request.node.browser_watch = watch
    yield context
    context.close()


def sign_in_as(site: Site, context, account: Account) -> None:
    """Sign ``context`` in as ``account`` through the API, as the login page does."""
    response = context.request.post(
        "/auth/login",
        data={"email": account.email, "password": account.password},
        headers={"Origin": site.origin},
    )
    assert response.ok, response.text()


@pytest.fixture
def sign_in(site: Site):
    """``sign_in(context, account)``: sign a context in as someone."""
    return lambda context, account: sign_in_as(site, context, account)


@pytest.fixture
def anon_page(context):
    return context.new_page()


@pytest.fixture
def page(site: Site, context, account: Account):
    sign_in_as(site, context, account)
    return context.new_page()


def _artifact_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    result = yield
    watch = getattr(item, "browser_watch", None)
    if watch is not None and watch.problems:
        raise AssertionError("the page misbehaved:\n" + "\n".join(watch.problems))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    site = getattr(item, "funcargs", {}).get("site")
    if report.failed and isinstance(site, Site):
        for name, proc in (("web", site.web), ("supervisor", site.supervisor)):
            tail = proc.output().splitlines()[-SERVER_LINES:]
            report.sections.append((f"{name} output (last lines)", "\n".join(tail)))
    context = getattr(item, "browser_context", None)
    if report.when == "call" and report.failed and context is not None:
        ARTIFACTS.mkdir(exist_ok=True)
        for index, open_page in enumerate(context.pages):
            path = ARTIFACTS / f"{_artifact_name(item.nodeid)}-{index}.png"
            try:
                open_page.screenshot(path=str(path), full_page=True)
            except Exception as exc:  # a crashed page still lets the report through
                report.sections.append(("screenshot", f"could not save {path.name}: {exc}"))
            else:
                report.sections.append(("screenshot", str(path)))
    return report
