"""Templates in the browser: a form made from each template's input schema,
crews started now or at a chosen local time, and the server's field errors
shown next to their fields."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.acceptance.browser.conftest import sign_in_as
from tests.acceptance.browser.crews import job, zoned_context

pytestmark = pytest.mark.browser


def test_a_crew_from_a_template_reaches_done_with_its_artifact(page):
    page.goto("/templates")
    page.get_by_role("link", name=re.compile("^Ask")).click()
    expect(page).to_have_url(re.compile(r"/templates\?template=ask$"))
    expect(page.get_by_role("heading", name="Ask", exact=True)).to_be_visible()
    expect(page.get_by_label("Question")).to_be_focused()
    page.get_by_label("Question").fill("How do tides work?")
    page.get_by_role("button", name="Start the crew").click()

    created = page.locator("#created")
    expect(created).to_contain_text(re.compile(r"Crew #\d+ started with 1 job\."))
    created.get_by_role("link", name="How do tides work?").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#job-status")).to_have_text("Done")
    expect(page.locator("#artifact-name")).to_have_text("answer.md")
    frame = page.frame_locator("#artifact-view iframe")
    expect(frame.locator("body")).to_contain_text("How do tides work?")
    expect(frame.locator("body")).to_contain_text("offline model")


def test_the_form_follows_the_schema_and_shows_the_servers_field_errors(page, watch):
    page.goto("/templates?template=research-brief")
    expect(page.locator("label", has_text="(required)")).to_have_text(["Topic (required)"])
    audience = page.get_by_label("Audience")
    expect(audience).to_have_value("engineers")
    expect(audience.locator("option")).to_have_text(["engineers", "executives"])
    words = page.get_by_label("Words")
    expect(words).to_have_value("300")
    expect(words).to_have_attribute("min", "50")
    expect(words).to_have_attribute("max", "2000")
    expect(page.get_by_label("Topic")).to_have_attribute("maxlength", "500")

    watch.allow_console("422")  # the refused crew's response
    words.fill("20")
    page.get_by_role("button", name="Start the crew").click()
    expect(page.locator("#form-error")).to_have_text(
        "The crew was not started: correct the marked fields."
    )
    topic = page.get_by_label("Topic")
    expect(topic).to_have_attribute("aria-invalid", "true")
    expect(topic).to_be_focused()
    expect(page.locator("#input-topic-error")).to_have_text("is required")
    expect(words).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#input-words-error")).to_contain_text("50")
    expect(page.locator("#created")).to_be_hidden()

    # A chosen time that is not a time never reaches the server.
    page.get_by_label("At a chosen time").check()
    page.get_by_label("Start at").fill("")
    page.get_by_role("button", name="Start the crew").click()
    expect(page.locator("#when-at-error")).to_have_text("choose a date and a time")

    # The chosen template is in the URL: back returns to it.
    page.get_by_role("link", name=re.compile("^Ask")).click()
    expect(page.get_by_role("heading", name="Ask", exact=True)).to_be_visible()
    page.go_back()
    expect(page).to_have_url(re.compile(r"\?template=research-brief$"))
    expect(page.get_by_label("Words")).to_have_value("300")


def test_a_crew_at_a_chosen_local_time_is_sent_with_the_local_offset(
    browser, site, watch, request, account
):
    context = zoned_context(browser, site, watch, request, "America/New_York")
    try:
        sign_in_as(site, context, account)
        page = context.new_page()
        page.goto("/templates?template=ask")
        page.get_by_label("Question").fill("Remind me about the eclipse")
        page.get_by_label("At a chosen time").check()
        expect(page.locator("#when-at-hint")).to_contain_text("America/New_York")
        # 09:30 in New York in January is 14:30 UTC.
        page.get_by_label("Start at").fill("2031-01-15T09:30")
        page.get_by_role("button", name="Start the crew").click()
        created = page.locator("#created")
        expect(created).to_contain_text(re.compile(r"Crew #\d+ is scheduled with 1 job\."))
        expect(created.locator(".status")).to_have_text("Waiting")
        href = created.get_by_role("link").first.get_attribute("href")
        scheduled = job(context, int(href.rsplit("/", 1)[1]))["job"]
        assert scheduled["scheduledAt"] == "2031-01-15T14:30:00.000Z"
        assert scheduled["status"] == "waiting"
    finally:
        context.close()
