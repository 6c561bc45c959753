"""Signing in and out in the browser, and the header every page shows."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.acceptance.browser.conftest import HeldBack

pytestmark = pytest.mark.browser


def test_sign_in_lands_where_asked_and_sign_out_ends_the_session(anon_page, account, watch):
    page = anon_page
    page.goto("/profile")
    # Pages that need a user send a stranger to the sign-in page, and back after.
    expect(page).to_have_url(re.compile(r"/login\?next=/profile$"))
    expect(page.locator("#google")).to_be_hidden()

    watch.allow_console("401")  # the refused attempt's response
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")

    page.get_by_label("Password").fill(account.password)
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(re.compile(r"/profile$"))
    header = page.locator("header.shell")
    user = header.locator(".user")
    expect(user).to_have_text(account.email.split("@")[0])
    expect(user).to_have_attribute("title", f"Signed in as {account.email}")
    expect(header.get_by_role("link", name="Profile")).to_have_attribute("aria-current", "page")
    expect(header.get_by_role("status")).to_have_text("Dispatcher alive")

    header.get_by_role("link", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("header.shell").get_by_role("link", name="Sign in")).to_be_visible()
    # The session is over on the server too: the page sends us back to sign in.
    page.goto("/chat")
    expect(page).to_have_url(re.compile(r"/login\?next=/chat$"))


def test_a_sign_in_submitted_at_once_is_sent_by_the_page(anon_page, account):
    """A password manager fills the form and submits it before the page has
    heard who is signed in: the page signs in, and the password never goes
    into a URL."""
    page = anon_page
    who = HeldBack(page, "**/auth/me")
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.goto("/login?next=/profile")
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(account.password)
    with page.expect_response("**/auth/login") as signed_in:
        page.get_by_label("Password").press("Enter")
    assert signed_in.value.ok
    assert who.held, "the page asked who is signed in"
    who.release()
    expect(page).to_have_url(re.compile(r"/profile$"))
    expect(page.locator("#profile")).to_contain_text(account.email)
    assert not [url for url in urls if "password" in url], urls


def test_signed_in_user_skips_the_sign_in_page(page):
    page.goto("/login")
    expect(page).to_have_url(re.compile(r"/chat$"))


def test_landing_page_offers_sign_in_to_strangers(anon_page):
    anon_page.goto("/")
    expect(anon_page.get_by_role("heading", name="crewboard")).to_be_visible()
    expect(anon_page.locator("#start")).to_have_attribute("href", "/login")


def test_google_button_shows_when_the_server_offers_google(anon_page):
    # The test server has no Google client; answer for it as one that has.
    anon_page.route(
        "**/auth/google-enabled",
        lambda route: route.fulfill(json={"enabled": True}),
    )
    anon_page.goto("/login?error=Google%20sign-in%20was%20cancelled")
    expect(anon_page.get_by_role("link", name="Sign in with Google")).to_have_attribute(
        "href", "/auth/google"
    )
    expect(anon_page.get_by_role("alert")).to_have_text("Google sign-in was cancelled")


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        ({"alive": False, "lastHeartbeatAt": "2020-02-03T04:05:06.000Z"}, "Dispatcher down since "),
        ({"alive": False, "lastHeartbeatAt": None}, "Dispatcher never started"),
    ],
)
def test_header_says_when_the_dispatcher_is_down(page, status, shown):
    # The test server's supervisor is alive; answer for one that is not.
    body = {"ageSeconds": None, "running": 0, "capacity": 0, "ready": 3, "supervisors": []}
    page.route("**/api/dispatcher/status", lambda route: route.fulfill(json={**body, **status}))
    page.goto("/profile")
    indicator = page.locator("header.shell").get_by_role("status")
    expect(indicator).to_contain_text(shown)
    expect(indicator).to_have_attribute("data-state", "down")
    if status["lastHeartbeatAt"]:
        expect(indicator).to_contain_text("2020")


def test_a_page_says_so_when_the_server_cannot_be_reached(page, watch):
    watch.allow_console("net::ERR_FAILED")  # the aborted request below
    page.route("**/auth/me", lambda route: route.abort())
    page.goto("/profile")
    expect(page.get_by_role("alert")).to_contain_text("cannot reach the server")
