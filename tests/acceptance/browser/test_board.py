"""The board in the browser: columns by status kept live by the change feed,
card actions that ask first, filters in the URL, paging, admins' view and
clearing, and one user's jobs hidden from another."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.acceptance.browser.crews import job, start_crew, wait_for_status

pytestmark = pytest.mark.browser


def column(page, status: str):
    return page.locator(f'section.column[data-status="{status}"]')


def card(page, status: str, text: str):
    return column(page, status).locator(".card", has_text=text)


def test_the_board_follows_a_crew_live_and_keeps_its_filters_in_the_url(page, site, context):
    page.goto("/board")
    expect(page.get_by_text("No jobs on the board yet.")).to_be_visible()
    expect(page.locator("#feed-state")).to_have_text(re.compile("^Live"))

    # A crew started elsewhere shows up and moves to done without a reload.
    crew = start_crew(site, context, "ask", {"question": "Which moon is largest?"})
    done = card(page, "done", "Which moon is largest?")
    expect(done).to_be_visible()
    expect(page.get_by_text("No jobs on the board yet.")).to_be_hidden()
    expect(column(page, "done").locator(".count")).to_have_text("1")
    expect(done.get_by_role("link", name="Which moon is largest?")).to_have_attribute(
        "href", f"/jobs/{crew['jobIds'][0]}"
    )

    # Archiving asks first; the card leaves the board.
    done.get_by_role("button", name=re.compile("^Archive")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Archive “Which moon is largest?”?")
    dialog.get_by_role("button", name="Archive").click()
    expect(done).to_be_hidden()
    expect(column(page, "archived")).to_have_count(0)

    # Filters live in the URL, so back and forward work.
    page.get_by_label("Show archived").check()
    expect(page).to_have_url(re.compile(r"/board\?archived=1$"))
    expect(card(page, "archived", "Which moon is largest?")).to_be_visible()
    page.get_by_label("Show", exact=True).select_option("archived")
    expect(page).to_have_url(re.compile(r"/board\?status=archived$"))
    expect(page.locator("section.column")).to_have_count(1)
    page.go_back()
    expect(page).to_have_url(re.compile(r"/board\?archived=1$"))
    expect(page.locator("section.column")).to_have_count(6)
    page.go_back()
    expect(page).to_have_url(re.compile(r"/board$"))
    expect(page.get_by_label("Show archived")).not_to_be_checked()
    expect(page.locator("section.column")).to_have_count(5)


def test_card_actions_ask_first_then_move_the_card(page, site, context):
    crew = start_crew(site, context, "ask", {"question": "Take your time\n/sleep 30"})
    job_id = crew["jobIds"][0]
    page.goto("/board")
    running = card(page, "running", "Take your time")
    expect(running).to_be_visible()

    # Changing one's mind leaves the job alone.
    running.get_by_role("button", name=re.compile("^Cancel")).click()
    page.get_by_role("dialog").get_by_role("button", name="Keep it").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(running.get_by_role("button", name=re.compile("^Cancel"))).to_be_focused()
    assert job(context, job_id)["job"]["status"] == "running"

    running.get_by_role("button", name=re.compile("^Cancel")).click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel the job").click()
    blocked = card(page, "blocked", "Take your time")
    expect(blocked).to_be_visible()
    expect(running).to_be_hidden()
    expect(blocked.locator(".reason")).to_contain_text("cancel")

    blocked.get_by_role("button", name=re.compile("^Delete")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("goes for good")
    dialog.get_by_role("button", name="Delete").click()
    expect(blocked).to_be_hidden()
    response = context.request.get(f"/api/jobs/{job_id}")
    assert response.status == 404


def test_a_column_loads_more_a_page_at_a_time(page, site, context):
    ids = [
        start_crew(site, context, "ask", {"question": f"Page me {n:02}"})["jobIds"][0]
        for n in range(23)
    ]
    for job_id in ids:
        wait_for_status(context, job_id, "done")
    page.goto("/board?status=done")
    done = column(page, "done")
    expect(done.locator(".card")).to_have_count(20)
    expect(done.locator(".count")).to_have_text("23"), "the real total, not 20+"
    # Newest first.
    expect(done.locator(".card").first).to_contain_text("Page me 22")
    done.get_by_role("button", name="Load more done jobs").click()
    expect(done.locator(".card")).to_have_count(23)
    expect(done.locator(".count")).to_have_text("23")
    expect(done.locator(".card").last).to_contain_text("Page me 00")
    expect(done.get_by_role("button", name="Load more done jobs")).to_be_hidden()


def test_another_user_sees_none_of_the_first_users_jobs(page, site, context, sign_in, watch):
    crew = start_crew(site, context, "ask", {"question": "Alice's private question"})
    job_id = crew["jobIds"][0]
    wait_for_status(context, job_id, "done")
    page.goto(f"/jobs/{job_id}")
    expect(page.get_by_role("heading", name="Alice's private question")).to_be_visible()
    # Leave her pages before the browser changes hands, so nothing of them (a
    # lazily loaded artifact frame, a live feed) loads under the next cookie.
    page.goto("about:blank")

    sign_in(context, site.fresh_account())
    page.goto("/board")
    expect(page.get_by_text("No jobs on the board yet.")).to_be_visible()
    expect(page.locator(".card")).to_have_count(0)

    watch.allow_console("404")  # the job's answer, as Chromium logs it
    page.goto(f"/jobs/{job_id}")
    expect(page.get_by_role("heading", name="Job not found")).to_be_visible()
    expect(page.get_by_text("Alice's private question")).to_have_count(0)
    expect(page.get_by_role("link", name="Back to the board")).to_be_visible()


def test_admins_see_everyone_and_clear_a_status(page, site, context, sign_in, account):
    crew = start_crew(site, context, "ask", {"question": "Left for the admin"})
    job_id = crew["jobIds"][0]
    wait_for_status(context, job_id, "done")
    response = context.request.post(f"/api/jobs/{job_id}/archive", headers={"Origin": site.origin})
    assert response.ok

    sign_in(context, site.admin)
    page.goto("/board?status=archived")
    archived = card(page, "archived", "Left for the admin")
    expect(archived).to_be_visible()
    expect(archived.locator(".owner")).to_have_text(account.email)

    page.get_by_label("Jobs of").select_option("1")
    expect(page).to_have_url(re.compile(r"/board\?status=archived&mine=1$"))
    expect(archived).to_be_hidden()
    page.go_back()
    expect(archived).to_be_visible()

    page.get_by_role("button", name="Clear the board…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Which jobs")).to_have_value("archived")
    dialog.get_by_role("button", name="Clear").click()
    expect(page.locator("#board-notice")).to_contain_text(re.compile(r"Deleted \d+ jobs?"))
    expect(archived).to_be_hidden()
    assert context.request.get(f"/api/jobs/{job_id}").status == 404
