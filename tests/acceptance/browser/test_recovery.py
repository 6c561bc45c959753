"""Pages recover by themselves: the web process is restarted (on the same
port, as systemd would) under an open job page and the board, while the
supervisor finishes the job. Once the server answers again, both pages show
the job done, its crew graph node included, and no error that said the
server could not be reached, without a reload.

These tests run their own server: restarting the shared one would pull it
from under every other browser test."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.acceptance.browser.conftest import TIMEOUT_MS, Site, Watch, sign_in_as
from tests.acceptance.browser.crews import start_crew
from tests.conftest import Account, add_user, make_config
from tests.support import engine
from tests.support.procs import Proc

pytestmark = pytest.mark.browser

# What Chromium logs while the server is away.
UNREACHABLE = ("ERR_CONNECTION_REFUSED", "ERR_INCOMPLETE_CHUNKED_ENCODING", "ERR_EMPTY_RESPONSE")


@dataclass
class Restartable:
    site: Site
    account: Account
    port: int

    def stop_web(self) -> None:
        with self.site.web as web:
            web.stop()

    def restart_web(self) -> None:
        self.site.web = _web(self.site.home, self.port)
        _wait_serving(self.site.web)


def _web(home: Path, port: int) -> Proc:
    argv = [sys.executable, "-m", "crewboard", "web", "--port", str(port), "--home", str(home)]
    return Proc(argv)


def _wait_serving(web: Proc) -> str:
    line = web.wait_for_line(lambda text: "crewboard web serving on " in text)
    return line.split("serving on ", 1)[1].split(",")[0].strip().rstrip("/") + "/"


@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restartable]:
    with engine.shared_board():
        yield from _restartable(tmp_path_factory.mktemp("restart") / "home")


def _restartable(home: Path) -> Iterator[Restartable]:
    from crewboard.board import db
    from crewboard.bootstrap import open_home

    config = make_config(home)
    open_home(config)
    try:
        admin = add_user(config, "admin@example.test", admin=True)
        account = add_user(config, "user@example.test")
    finally:
        db.close()
    web = _web(home, 0)
    supervisor = Proc([sys.executable, "-m", "crewboard", "supervisor", "--home", str(home)])
    with supervisor:
        url = _wait_serving(web)
        supervisor.wait_for_line(lambda text: "supervisor" in text and " ready" in text)
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        restartable = Restartable(Site(url, home, admin, [], web, supervisor), account, port)
        try:
            yield restartable
        finally:
            for proc in {web, restartable.site.web}:
                with proc:
                    proc.stop()
            supervisor.stop()


@pytest.fixture
def restart_context(browser, restartable: Restartable, request: pytest.FixtureRequest):
    site = restartable.site
    watch = Watch(site.origin)
    for text in UNREACHABLE:
        watch.allow_console(text)
    context = browser.new_context(base_url=site.url, service_workers="block")
    context.set_default_timeout(TIMEOUT_MS)
    context.on("request", watch.on_request)
    context.on("page", watch.watch)
    request.node.browser_context = context
    request.node.browser_watch = watch
    sign_in_as(site, context, restartable.account)
    yield context
    context.close()


@pytest.mark.parametrize("width", [1366, 375])
def test_the_job_page_and_the_board_recover_after_the_server_restarts(
    restartable: Restartable, restart_context, width: int
):
    site = restartable.site
    context = restart_context
    crew = start_crew(site, context, "ask", {"question": f"Outlast a restart {width}\n/sleep 12"})
    job_id = crew["jobIds"][0]

    board = context.new_page()
    board.set_viewport_size({"width": width, "height": 800})
    board.goto("/board")
    card = board.locator(f'[data-job-id="{job_id}"]')
    expect(
        board.locator('[data-status="running"]').locator(f'[data-job-id="{job_id}"]')
    ).to_be_visible()

    page = context.new_page()
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("Running")
    node = page.locator("#graph a.gnode.current")
    expect(node).to_have_class(re.compile(r"\bs-running\b"))

    restartable.stop_web()
    # The page notices: a comment cannot be sent, and says why.
    page.get_by_label("Add a comment").fill("Still there?")
    page.get_by_role("button", name="Comment", exact=True).click()
    expect(page.locator("#comment-error")).to_contain_text("cannot reach the server")
    expect(page.locator(".dispatcher")).to_have_text("Server unreachable")
    # The job ends while the web process is away: the pages miss that event.
    site.supervisor.wait_for_line(lambda text: f"of job {job_id}: succeeded" in text, timeout_s=30)

    restartable.restart_web()

    expect(page.locator("#job-status")).to_have_text("Done", timeout=15_000)
    expect(node).to_have_class(re.compile(r"\bs-done\b"))
    expect(page.locator("#comment-error")).to_be_hidden()
    expect(page.locator("#job-error")).to_be_hidden()
    expect(page.locator(".dispatcher")).not_to_have_text("Server unreachable")
    expect(page.locator("#transcript .answer.rendered")).to_contain_text("Outlast a restart")
    # What was typed is still there, to send again.
    expect(page.get_by_label("Add a comment")).to_have_value("Still there?")

    expect(
        board.locator('[data-status="done"]').locator(f'[data-job-id="{job_id}"]')
    ).to_be_visible(timeout=15_000)
    expect(card).to_have_count(1)
    expect(board.locator("#board-error")).to_be_hidden()


def test_the_profile_page_recovers_after_the_server_restarts(
    restartable: Restartable, restart_context
):
    page = restart_context.new_page()
    page.goto("/profile")
    expect(page.get_by_text("You have no API tokens.")).to_be_visible()

    restartable.stop_web()
    page.get_by_label("New token's name").fill("while away")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#token-error")).to_contain_text("cannot reach the server")
    # A token is made meanwhile, with the CLI.
    site = restartable.site
    argv = ["token", "create", "--home", str(site.home), "--name", "from elsewhere"]
    subprocess.run(
        [sys.executable, "-m", "crewboard", *argv, restartable.account.email],
        check=True,
        capture_output=True,
    )
    restartable.restart_web()

    expect(page.locator("#token-error")).to_be_hidden()
    expect(page.locator("#tokens tbody tr")).to_have_count(1)
    expect(page.locator("#tokens")).to_contain_text("from elsewhere")
