"""Schedules in the browser: the editor's live preview of fire times (local
and UTC, the server's errors inline), creating, running now, editing,
pausing and deleting, with the URL saying what is open."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.acceptance.browser.conftest import sign_in_as
from tests.acceptance.browser.crews import job, zoned_context

pytestmark = pytest.mark.browser


def test_a_schedule_made_with_a_live_preview_then_run_now(browser, site, watch, request, account):
    context = zoned_context(browser, site, watch, request, "Asia/Tokyo")
    try:
        sign_in_as(site, context, account)
        page = context.new_page()
        page.goto("/schedules")
        expect(page.get_by_text("No schedules yet.")).to_be_visible()
        page.get_by_role("link", name="New schedule").click()
        expect(page).to_have_url(re.compile(r"/schedules\?new=1$"))
        expect(page.get_by_role("heading", name="New schedule")).to_be_visible()
        expect(page.get_by_label("Name")).to_be_focused()
        # The time zone starts as the browser's.
        expect(page.get_by_label("Time zone")).to_have_value("Asia/Tokyo")

        page.get_by_label("Name").fill("Morning question")
        page.get_by_label("Template").select_option(label="Ask")
        page.get_by_label("Question").fill("What changed overnight?")

        watch.allow_console("422")  # the previews of a bad rule and zone
        rule = page.get_by_label("Rule")
        rule.fill("61 * * * *")
        expect(page.locator("#schedule-rule-error")).to_contain_text("61")
        expect(rule).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#preview-list li")).to_have_count(0)

        rule.fill("30 8 * * mon-fri")
        times = page.locator("#preview-list li")
        expect(times).to_have_count(5)
        expect(rule).not_to_have_attribute("aria-invalid", "true")
        expect(page.locator("#preview-state")).to_contain_text("Asia/Tokyo")
        # 08:30 in Tokyo (UTC+09:00) is 23:30 UTC the day before.
        expect(times.first.locator(".fire-local")).to_contain_text("08:30")
        expect(times.first.locator(".fire-local")).to_contain_text("(UTC+09:00)")
        expect(times.first.locator(".fire-utc")).to_contain_text(re.compile(r"11:30 PM UTC"))

        zone = page.get_by_label("Time zone")
        zone.fill("Mars/Olympus_Mons")
        expect(page.locator("#schedule-timezone-error")).to_be_visible()
        expect(times).to_have_count(0)
        zone.fill("Europe/Paris")
        expect(times).to_have_count(5)
        expect(times.first.locator(".fire-local")).to_contain_text(re.compile(r"\(UTC\+0[12]:00\)"))
        expect(times.first.locator(".fire-utc")).to_contain_text(re.compile(r"0[67]:30 AM UTC"))

        page.get_by_role("button", name="Create the schedule").click()
        expect(page).to_have_url(re.compile(r"/schedules$"))
        schedule = page.locator(".schedule", has_text="Morning question")
        expect(schedule).to_be_visible()
        expect(schedule.locator(".badge")).to_have_text("Enabled")
        expect(schedule.locator(".schedule-rule")).to_contain_text(
            "30 8 * * mon-fri in Europe/Paris"
        )
        expect(schedule.locator(".fire-local")).to_contain_text("08:30")
        expect(page.locator("#schedules-notice")).to_have_text("Created “Morning question”.")

        # Run now: the crew it spawns is listed under the schedule, and finishes.
        schedule.get_by_role("button", name="Run now “Morning question”").click()
        expect(page.locator("#schedules-notice")).to_contain_text(re.compile(r"started crew #\d+"))
        spawned = schedule.locator(".spawned-jobs li")
        expect(spawned).to_have_count(1)
        expect(spawned.get_by_role("link", name="What changed overnight?")).to_be_visible()
        expect(spawned.locator(".status")).to_have_text("Done")
        href = spawned.get_by_role("link").get_attribute("href")
        assert job(context, int(href.rsplit("/", 1)[1]))["job"]["scheduleId"] is not None
    finally:
        context.close()


def _make_schedule(site, context, name: str) -> dict:
    response = context.request.post(
        "/api/schedules",
        data={
            "name": name,
            "templateId": "ask",
            "inputs": {"question": "Anything new?"},
            "rule": "0 9 * * *",
            "timezone": "UTC",
        },
        headers={"Origin": site.origin},
    )
    assert response.status == 201, response.text()
    return response.json()


def test_edit_pause_and_delete_a_schedule(page, site, context):
    schedule = _make_schedule(site, context, "Daily check")
    ran = context.request.post(
        f"/api/schedules/{schedule['id']}/run-now", headers={"Origin": site.origin}
    ).json()
    page.goto("/schedules")
    card = page.locator(".schedule", has_text="Daily check")
    expect(card).to_be_visible()

    card.get_by_role("button", name="Edit “Daily check”").click()
    expect(page).to_have_url(re.compile(rf"/schedules\?edit={schedule['id']}$"))
    expect(page.get_by_role("heading", name="Edit “Daily check”")).to_be_visible()
    expect(page.get_by_label("Template")).to_be_disabled()
    expect(page.get_by_label("Question")).to_have_value("Anything new?")
    expect(page.locator("#preview-list li")).to_have_count(5)
    page.get_by_label("Rule").fill("@weekly")
    page.get_by_label("Question").fill("Anything new this week?")
    page.get_by_role("button", name="Save the changes").click()
    expect(card.locator(".schedule-rule")).to_contain_text("@weekly in UTC")
    expect(card).to_contain_text("question = Anything new this week?")
    expect(page.get_by_role("heading", name="Edit “Daily check”")).to_be_hidden()
    page.go_back()
    expect(page.get_by_role("heading", name="Edit “Daily check”")).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    expect(page).to_have_url(re.compile(r"/schedules$"))

    card.get_by_role("button", name="Pause “Daily check”").click()
    expect(card.locator(".badge")).to_have_text("Paused")
    expect(card).to_contain_text("— (paused)")
    enable = card.get_by_role("button", name="Enable “Daily check”")
    expect(enable).to_be_focused()
    # A crew it starts meanwhile refreshes the card (its actions are drawn
    # anew): the focus stays on the same action.
    drawn = enable.element_handle()
    context.request.post(
        f"/api/schedules/{schedule['id']}/run-now", headers={"Origin": site.origin}
    )
    page.wait_for_function("button => !button.isConnected", arg=drawn)
    expect(enable).to_be_focused()
    enable.click()
    expect(card.locator(".badge")).to_have_text("Enabled")

    card.get_by_role("button", name="Delete “Daily check”").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("The jobs it already started stay on the board.")
    dialog.get_by_role("button", name="Delete").click()
    expect(card).to_have_count(0)
    expect(page.get_by_text("No schedules yet.")).to_be_visible()
    # The crew it started is still there.
    assert job(context, ran["jobIds"][0])["job"]["scheduleId"] is None
