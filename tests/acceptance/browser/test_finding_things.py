"""The board, job, schedule and template pages as a newcomer finds them, at a
laptop's width (1366 px) and a phone's (375 px): loading that looks like
loading, real column totals and a search, a page with a way back for an
address that is no page, restoring archived jobs, a refused delete that talks
about the dialog, editors that keep what was typed, and a Stop that is not
shown as a failure."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.acceptance.browser.crews import job, start_crew, wait_for_status
from tests.support.waits import wait_until

pytestmark = pytest.mark.browser

WIDTHS = [pytest.param(1366, id="1366px"), pytest.param(375, id="375px")]
# The list and the totals of the board, held back to see the page load.
BOARD_API = re.compile(r"/api/jobs(\?|/counts)")


@pytest.fixture(params=WIDTHS)
def width(request) -> int:
    return request.param


@pytest.fixture
def sized(page, width):
    page.set_viewport_size({"width": width, "height": 800})
    return page


def column(page, status: str):
    return page.locator(f'section.column[data-status="{status}"]')


def holding(held: list):
    """A route handler that holds each request back in ``held``."""
    return lambda route: held.append(route)


def release(page, url, held) -> None:
    """Stop holding requests to ``url`` and let the held ones through."""
    page.unroute(url)
    for route in held:
        try:
            route.continue_()
        except PlaywrightError:
            pass  # unrouting let it through already


def no_sideways_scroll(page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px"


def test_the_board_shows_loading_until_its_jobs_arrive_never_empty(sized, site, context):
    held = []
    sized.route(BOARD_API, holding(held))
    sized.goto("/board")
    expect(column(sized, "ready").locator(".loading-note")).to_have_text("Loading…")
    expect(column(sized, "ready").locator(".skeleton-card").first).to_be_visible()
    expect(column(sized, "ready").locator(".count")).to_have_text("…")
    expect(sized.get_by_text("No jobs on the board yet.")).to_have_count(0)
    expect(sized.locator(".column .empty:visible")).to_have_count(0)
    expect(sized.locator("#columns")).to_have_attribute("aria-busy", "true")
    no_sideways_scroll(sized)
    release(sized, BOARD_API, held)
    expect(sized.get_by_text("No jobs on the board yet.")).to_be_visible()
    expect(column(sized, "ready").locator(".count")).to_have_text("0")
    expect(column(sized, "ready").locator(".loading-note")).to_be_hidden()
    expect(sized.locator("#columns")).to_have_attribute("aria-busy", "false")


def test_the_job_schedule_and_template_pages_say_loading_first(sized, site, context):
    crew = start_crew(site, context, "ask", {"question": "Load me"})
    for path, api, words in (
        (f"/jobs/{crew['jobIds'][0]}", re.compile(r"/api/jobs/\d+$"), "Loading the job…"),
        ("/schedules", re.compile(r"/api/schedules(\?|$)"), "Loading the schedules…"),
        ("/templates", re.compile(r"/api/templates$"), "Loading the templates…"),
    ):
        held = []
        sized.route(api, holding(held))
        sized.goto(path)
        expect(sized.get_by_text(words)).to_be_visible()
        expect(sized.locator(".skeleton-card").first).to_be_visible()
        expect(sized.locator(".empty:visible, .board-empty:visible")).to_have_count(0)
        release(sized, api, held)
        expect(sized.get_by_text(words)).to_be_hidden()


def test_search_filters_the_board_and_headings_show_real_totals(sized, site, context):
    for question in ("Owls at night", "Owls by day", "Larks at dawn"):
        wait_for_status(
            context, start_crew(site, context, "ask", {"question": question})["jobIds"][0], "done"
        )
    sized.goto("/board")
    done = column(sized, "done")
    expect(done.locator(".count")).to_have_text("3")
    sized.get_by_label("Search").fill("owls")
    expect(sized).to_have_url(re.compile(r"/board\?q=owls$"))
    expect(done.locator(".card")).to_have_count(2)
    expect(done.locator(".count")).to_have_text("2")
    expect(done.get_by_text("Larks at dawn")).to_have_count(0)
    sized.get_by_label("Search").fill("ask")  # the template's id finds them all
    expect(done.locator(".card")).to_have_count(3)
    sized.get_by_label("Search").fill("nothing here")
    expect(sized.get_by_text("No jobs match “nothing here”.")).to_be_visible()
    expect(done.locator(".count")).to_have_text("0")
    no_sideways_scroll(sized)
    # The search lives in the URL: a reload keeps it.
    sized.goto("/board?q=larks")
    expect(sized.get_by_label("Search")).to_have_value("larks")
    expect(done.locator(".card")).to_have_count(1)


@pytest.mark.parametrize("path", ["/nope", "/jobs/abc"])
def test_an_address_that_is_no_page_gets_a_page_with_a_way_back(sized, watch, path):
    watch.allow_console("404")  # the page's own status, as Chromium logs it
    response = sized.goto(path)
    assert response is not None and response.status == 404
    expect(sized.get_by_role("heading", name="Page not found")).to_be_visible()
    no_sideways_scroll(sized)
    sized.get_by_role("link", name="Go to the board").click()
    expect(sized).to_have_url(re.compile(r"/board$"))


def test_an_archived_job_is_restored_from_the_board(sized, site, context):
    job_id = start_crew(site, context, "ask", {"question": "Bring me back"})["jobIds"][0]
    wait_for_status(context, job_id, "done")
    archived = context.request.post(f"/api/jobs/{job_id}/archive", headers={"Origin": site.origin})
    assert archived.ok
    sized.goto("/board?status=archived")
    card = column(sized, "archived").locator(".card", has_text="Bring me back")
    card.get_by_role("button", name=re.compile("^Restore")).click()
    dialog = sized.get_by_role("dialog")
    expect(dialog).to_contain_text("Restore “Bring me back”?")
    dialog.get_by_role("button", name="Restore").click()
    expect(card).to_be_hidden()
    assert job(context, job_id)["job"]["status"] == "done"
    sized.goto("/board")
    expect(column(sized, "done").get_by_text("Bring me back")).to_be_visible()


def test_a_refused_delete_talks_about_the_dialogs_checkbox(sized, site, context, watch):
    watch.allow_console("409")  # the refusal, as Chromium logs it
    crew = start_crew(site, context, "research-brief", {"topic": "owls"})
    for job_id in crew["jobIds"]:
        wait_for_status(context, job_id, "done", timeout_s=30)
    first = crew["jobIds"][0]
    sized.goto(f"/jobs/{first}")
    sized.locator("#job-actions").get_by_role("button", name=re.compile("^Delete")).click()
    sized.get_by_role("dialog").get_by_role("button", name="Delete").click()
    error = sized.locator("#job-error")
    expect(error).to_contain_text("Tick “Also delete the jobs that depend on it”")
    expect(error).not_to_contain_text("cascade")
    # Ticking it deletes the crew's dependent jobs too.
    sized.locator("#job-actions").get_by_role("button", name=re.compile("^Delete")).click()
    dialog = sized.get_by_role("dialog")
    dialog.get_by_label("Also delete the jobs that depend on it").check()
    dialog.get_by_role("button", name="Delete").click()
    for job_id in crew["jobIds"]:
        wait_until(
            lambda job_id=job_id: context.request.get(f"/api/jobs/{job_id}").status == 404,
            what=f"job {job_id} deleted",
        )


def test_the_schedule_editor_clears_an_error_once_the_field_is_filled(sized, site, context, watch):
    watch.allow_console("422")  # the refusal, as Chromium logs it
    sized.goto("/schedules?new=1&template=ask")
    sized.locator("#schedule-input-question").fill("A daily question")
    sized.locator("#schedule-rule").fill("0 9 * * *")
    sized.get_by_role("button", name="Create the schedule").click()
    expect(sized.locator("#schedule-name-error")).to_have_text("must not be empty")
    sized.locator("#schedule-name").fill("Mornings")
    # Neither the field's message nor the form's summary of it stays.
    expect(sized.get_by_text("must not be empty")).to_have_count(0)
    expect(sized.locator("#schedule-name")).not_to_have_attribute("aria-invalid", "true")


def test_schedule_it_instead_keeps_what_was_typed(sized, site, context):
    sized.goto("/templates?template=ask")
    sized.locator("#input-question").fill("What changed overnight?")
    sized.locator("#crew-title").fill("Overnight")
    sized.get_by_role("link", name="Schedule it instead…").click()
    expect(sized).to_have_url(re.compile(r"/schedules\?new=1&template=ask$"))
    expect(sized.locator("#schedule-input-question")).to_have_value("What changed overnight?")
    expect(sized.locator("#schedule-name")).to_have_value("Overnight")
    # Once: a later new schedule starts empty.
    sized.goto("/schedules?new=1&template=ask")
    expect(sized.locator("#schedule-input-question")).to_have_value("")


def test_the_when_choice_starts_at_now_for_each_template(sized, site, context):
    sized.goto("/templates?template=ask")
    sized.get_by_label("At a chosen time").check()
    expect(sized.locator("#when-at")).to_be_visible()
    sized.goto("/templates")
    sized.locator('a[data-template="research-brief"]').click()
    expect(sized.get_by_label("Now")).to_be_checked()
    expect(sized.locator("#when-at")).to_be_hidden()
    sized.go_back()
    expect(sized.get_by_label("Now")).to_be_checked()


def test_stop_is_shown_as_stopped_not_as_a_red_failure(sized, site, context):
    job_id = start_crew(site, context, "ask", {"question": "Take a while\n/sleep 30"})["jobIds"][0]
    wait_for_status(context, job_id, "running")
    sized.goto(f"/jobs/{job_id}")
    expect(sized.locator("#log-state")).to_contain_text("Live")
    sized.locator("#job-actions").get_by_role("button", name=re.compile("^Cancel")).click()
    sized.get_by_role("dialog").get_by_role("button", name="Cancel the job").click()
    expect(sized.locator(".notice.stopped")).to_have_text("Stopped: the run was cancelled.")
    expect(sized.get_by_text("Stopped at your request.")).to_be_visible()
    expect(sized.get_by_text("SIGTERM")).to_have_count(0)
    expect(sized.locator(".turn-error, .run-error")).to_have_count(0)
    no_sideways_scroll(sized)
