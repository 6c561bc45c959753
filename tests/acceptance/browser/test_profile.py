"""The profile page: who you are, and personal API tokens — created with the
secret shown once (with a copy button), listed, used, and revoked."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.acceptance.browser.conftest import HeldBack

pytestmark = pytest.mark.browser


def test_create_copy_use_and_revoke_an_api_token(site, context, page, account):
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.origin)
    page.goto("/profile")
    expect(page.locator("#profile")).to_contain_text(account.email)
    expect(page.get_by_text("You have no API tokens.")).to_be_visible()

    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_role("alert")).to_contain_text("Give the token a name")

    page.get_by_label("New token's name").fill("laptop scripts")
    page.get_by_label("New token's name").press("Enter")
    secret_box = page.get_by_label("Token", exact=True)
    expect(secret_box).to_have_value(re.compile(r"^cb_"))
    secret = secret_box.input_value()
    expect(page.get_by_role("alert")).to_be_hidden()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret

    rows = page.locator("#tokens tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("laptop scripts")
    expect(rows.first).to_contain_text("never")

    # The secret works as a bearer token, and is never shown again.
    me = httpx.get(f"{site.url}auth/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.json()["email"] == account.email
    page.reload()
    expect(page.locator("#tokens tbody tr")).to_have_count(1)
    expect(page.locator("#new-token")).to_be_hidden()
    assert secret not in page.content()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke token laptop scripts").click()
    expect(page.get_by_text("You have no API tokens.")).to_be_visible()
    gone = httpx.get(f"{site.url}auth/me", headers={"Authorization": f"Bearer {secret}"})
    assert gone.status_code == 401


def test_profile_fits_a_phone_screen(page, account):
    page.set_viewport_size({"width": 375, "height": 740})
    # On a slow network the form works before the page has heard who is
    # signed in.
    who = HeldBack(page, "**/auth/me")
    page.goto("/profile")
    page.get_by_label("New token's name").fill("phone")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_label("Token", exact=True)).to_have_value(re.compile(r"^cb_"))
    assert who.held, "the page asked who is signed in"
    expect(page.locator("#profile")).not_to_contain_text(account.email)
    who.release()
    expect(page.locator("#profile")).to_contain_text(account.email)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways ({width}px wide)"


def test_tokens_show_their_expiry_and_last_use(site, page):
    page.goto("/profile")
    page.get_by_label("New token's name").fill("ci")
    page.get_by_label("Expires").select_option(label="in 7 days")
    page.get_by_role("button", name="Create token").click()
    secret = page.get_by_label("Token", exact=True)
    expect(secret).to_have_value(re.compile(r"^cb_"))
    used = httpx.get(
        f"{site.url}auth/me", headers={"Authorization": f"Bearer {secret.input_value()}"}
    )
    assert used.status_code == 200
    page.get_by_label("New token's name").fill("forever")
    page.get_by_label("Expires").select_option(label="never")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#tokens tbody tr")).to_have_count(2)

    page.reload()
    ci = page.locator("#tokens tbody tr", has_text="ci")
    expiry = ci.locator('td[data-label="Expires"] time')
    created = page.evaluate("Date.now()")
    expires_ms = page.evaluate(
        "(t) => Date.parse(t)", expiry.get_attribute("datetime") or "not a time"
    )
    assert 6.9 * 86_400_000 < expires_ms - created <= 7 * 86_400_000
    expect(ci.locator('td[data-label="Last used"] time')).to_have_count(1)
    forever = page.locator("#tokens tbody tr", has_text="forever")
    expect(forever.locator('td[data-label="Expires"]')).to_have_text("never")
    expect(forever.locator('td[data-label="Last used"]')).to_have_text("never")


def test_show_copy_and_rotate_the_webhook_signing_secret(site, context, page, account):
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.origin)
    page.goto("/profile")
    box = page.get_by_label("Signing secret", exact=True)
    expect(box).to_have_value("")
    page.get_by_role("button", name="Show signing secret").click()
    expect(box).to_have_value(re.compile(r"^whsec_[A-Za-z0-9+/]{43}="))
    first = box.input_value()
    page.get_by_role("button", name="Copy signing secret").click()
    expect(page.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == first

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Rotate signing secret").click()
    expect(box).not_to_have_value(first)
    expect(box).to_have_value(re.compile(r"^whsec_"))
    rotated = box.input_value()
    # The page shows what the API now signs with.
    page.reload()
    page.get_by_role("button", name="Show signing secret").click()
    expect(page.get_by_label("Signing secret", exact=True)).to_have_value(rotated)
