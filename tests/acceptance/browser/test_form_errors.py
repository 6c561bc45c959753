"""Every form says what failed next to what was filled in, on screen, in
words that say what to do (static/formerror.js), at a laptop's and a
phone's width: the token form, the template form, a job's comment form and
the sign-in form."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.acceptance.browser.crews import start_crew
from tests.acceptance.browser.screens import WIDTHS, at_width, on_screen

pytestmark = pytest.mark.browser


def overfill(locator, length: int) -> None:
    """Put more text in a field than its maxlength lets a person type (as a
    script or an old page might send)."""
    locator.evaluate(
        "(input, n) => { input.removeAttribute('maxlength'); input.value = 'n'.repeat(n); }", length
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_the_token_form_names_the_limit_by_the_field(page, watch, width):
    watch.allow_console("status of 422")
    at_width(page, width)
    page.goto("/profile")
    name = page.get_by_label("New token's name")
    page.get_by_role("button", name="Create token").click()
    box = page.locator("#token-error")
    expect(box).to_have_text("Give the token a name, so you know later what it is for.")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_be_focused()

    overfill(name, 150)
    page.get_by_role("button", name="Create token").click()
    expect(box).to_have_text(
        "The token was not created: name too long: 150 characters, the limit is 100."
    )
    assert on_screen(box)
    expect(page.locator("#token-name-error")).to_have_text(
        "too long: 150 characters, the limit is 100"
    )

    name.fill("laptop")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_be_visible()
    expect(box).to_be_hidden()
    expect(name).not_to_have_attribute("aria-invalid", "true")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_template_form_marks_the_field_the_server_refused(page, watch, width):
    watch.allow_console("status of 422")
    at_width(page, width)
    page.goto("/templates?template=ask")
    page.get_by_label("Question").fill("Why is the sky blue?")
    title = page.get_by_label(re.compile("^Crew title"))
    overfill(title, 400)
    page.get_by_role("button", name="Start the crew").click()
    box = page.locator("#form-error")
    expect(box).to_have_text(
        "The crew was not started: title too long: 400 characters, the limit is 300."
    )
    assert on_screen(box)
    expect(title).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Question")).to_have_value("Why is the sky blue?")


@pytest.mark.parametrize("width", WIDTHS)
def test_a_comment_that_is_too_long_is_explained_under_it(page, site, context, watch, width):
    watch.allow_console("status of 422")
    at_width(page, width)
    crew = start_crew(site, context, "ask", {"question": f"Comment on me {width}"})
    page.goto(f"/jobs/{crew['jobIds'][0]}")
    text = page.get_by_label("Add a comment")
    overfill(text, 10_001)
    page.get_by_role("button", name="Comment", exact=True).click()
    box = page.locator("#comment-error")
    expect(box).to_have_text("The comment was not added: comment must be at most 10000 characters.")
    expect(text).to_have_attribute("aria-invalid", "true")
    assert on_screen(box)


@pytest.mark.parametrize("width", WIDTHS)
def test_a_refused_sign_in_is_said_by_the_form(anon_page, watch, width):
    watch.allow_console("401")
    page = anon_page
    at_width(page, width)
    page.goto("/login")
    page.get_by_role("button", name="Sign in").click()
    box = page.locator("#login-error")
    expect(box).to_have_text("Enter your email and password.")
    expect(page.get_by_label("Email")).to_be_focused()
    page.get_by_label("Email").fill("nobody@example.test")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(box).to_be_visible()
    expect(box).not_to_have_text("Enter your email and password.")
    assert on_screen(box)
    # The box belongs to the form, just above its button.
    assert box.evaluate("b => b.closest('form')?.id") == "login-form"
