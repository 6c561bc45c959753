"""Where the sign-in page sends a signed-in browser: ``?next=`` goes to a
path on this site and nowhere else, whatever the encoding. Checked twice:
through the real server (whose ``/login`` route drops an unsafe ``next``) and
with the page served whatever the query says, so the page's own check
(``static/login.js``) is tested on its own too."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.support.hostile import HOSTILE_NEXT

pytestmark = pytest.mark.browser


def _assert_stayed(page, origin: str) -> None:
    expect(page).to_have_url(re.compile(r"/chat$"))
    parts = urlsplit(page.url)
    assert f"{parts.scheme}://{parts.netloc}" == origin


def test_a_hostile_next_never_leaves_the_site(page, site):
    # One signed-in page tries them all (each test takes an account of a pool).
    for next_ in HOSTILE_NEXT:
        page.goto(f"/login?next={next_}")
        _assert_stayed(page, site.origin)


def test_the_sign_in_page_alone_refuses_a_hostile_next(page, site):
    # Serve the page whatever its query, as if the server's check were gone.
    shell = page.request.get(f"{site.url}login").text()
    page.route(
        re.compile(r".*/login\?.*"),
        lambda route: route.fulfill(body=shell, content_type="text/html"),
    )
    for next_ in HOSTILE_NEXT:
        page.goto(f"/login?next={next_}")
        _assert_stayed(page, site.origin)


def test_a_same_site_next_is_followed(page):
    page.goto("/login?next=/board%3Fstatus%3Dready")
    expect(page).to_have_url(re.compile(r"/board\?status=ready$"))


def test_sign_out_is_a_post(page):
    page.goto("/profile")
    header = page.locator("header.shell")
    with page.expect_request(lambda r: r.url.endswith("/auth/logout")) as sent:
        header.get_by_role("link", name="Sign out").click()
    assert sent.value.method == "POST"
    expect(page).to_have_url(re.compile(r"/$"))
    page.goto("/chat")
    expect(page).to_have_url(re.compile(r"/login\?next=/chat$"))
