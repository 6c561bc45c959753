"""A job's page in the browser: status and actions, the artifact in a
sandboxed frame, the live log, redo with feedback, cancelling, parent
results, comments and the crew graph."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.acceptance.browser.crews import job, start_crew, wait_for_status

pytestmark = pytest.mark.browser


def test_redo_with_feedback_runs_the_job_again(page, site, context):
    crew = start_crew(site, context, "ask", {"question": "Name three rivers"})
    job_id = crew["jobIds"][0]
    page.goto(f"/jobs/{job_id}")
    expect(page.get_by_role("heading", name="Name three rivers")).to_be_visible()
    expect(page.locator("#job-status")).to_have_text("Done")
    # The artifact, as the server rendered it, in a frame of its own.
    frame = page.frame_locator("#artifact-view iframe")
    expect(frame.get_by_text("Name three rivers")).to_be_visible()
    expect(page.locator("#artifact-view iframe")).to_have_attribute("sandbox", "")
    expect(page.get_by_role("link", name="Download")).to_have_attribute(
        "href", f"/api/jobs/{job_id}/artifact?download=1"
    )
    expect(page.locator("#runs li")).to_have_count(1)

    page.get_by_role("button", name=re.compile("^Redo")).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Redo with feedback").click()
    expect(dialog.get_by_role("alert")).to_have_text("Feedback is required.")
    dialog.get_by_label("Feedback").fill("Only rivers in Africa, please.")
    dialog.get_by_role("button", name="Redo with feedback").click()
    expect(dialog).to_have_count(0)

    # It runs again and finishes; the feedback is in its events and its new prompt.
    expect(page.locator("#runs li")).to_have_count(2)
    expect(page.locator("#job-status")).to_have_text("Done")
    redo = page.locator("#timeline .kind-redo")
    expect(redo).to_contain_text("Only rivers in Africa, please.")
    expect(redo).to_contain_text("you")
    expect(page.locator("#facts")).to_contain_text("Only rivers in Africa, please.")
    expect(page.locator("#transcript .message.user")).to_contain_text("Only rivers in Africa")
    # The answer is the server's rendering of its Markdown, not the raw text.
    answer = page.locator("#transcript .answer.rendered")
    expect(answer).to_contain_text("Only rivers in Africa")
    expect(answer).not_to_have_class(re.compile("plain"))
    expect(answer.locator("blockquote").first).to_be_visible()
    assert len(job(context, job_id)["runs"]) == 2


def test_a_running_job_streams_its_log_live_and_can_be_cancelled(page, site, context):
    question = "Slowly, please\n/tool list_files {}\n/sleep 30"
    crew = start_crew(site, context, "ask", {"question": question})
    job_id = crew["jobIds"][0]
    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("Running")
    expect(page.locator("#log-state")).to_have_text(re.compile("^Live"))
    expect(page.locator("#transcript .message.user")).to_contain_text("Slowly, please")
    expect(page.locator("#transcript .step.tool")).to_contain_text("list_files")
    expect(page.locator("#transcript .working")).to_be_visible()
    # A crew of one: its only node is this job.
    node = page.locator("#graph a")
    expect(node).to_have_count(1)
    expect(node).to_have_attribute("aria-current", "page")
    expect(node).to_have_class(re.compile("s-running"))
    expect(page.locator("#artifact-section")).to_be_hidden()

    page.get_by_role("button", name=re.compile("^Cancel")).click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel the job").click()
    expect(page.locator("#job-status")).to_have_text("Blocked")
    expect(page.locator("#runs li").first).to_contain_text("cancelled")
    expect(page.locator("#timeline .kind-cancel_requested")).to_contain_text("you")
    expect(page.get_by_role("button", name=re.compile("^Unblock"))).to_be_visible()
    expect(page.locator("#graph a")).to_have_class(re.compile("s-blocked"))


def test_parent_results_comments_and_the_crew_graph(page, site, context):
    crew = start_crew(
        site, context, "research-brief", {"topic": "Coral reefs", "audience": "executives"}
    )
    research_id, brief_id = crew["jobIds"]
    wait_for_status(context, brief_id, "done")
    page.goto(f"/jobs/{brief_id}")
    expect(page.get_by_role("heading", name="Brief: Coral reefs")).to_be_visible()

    parent = page.locator("#parents .parent")
    expect(parent).to_have_count(1)
    expect(parent.get_by_role("link", name="Research Coral reefs")).to_have_attribute(
        "href", f"/jobs/{research_id}"
    )
    expect(parent.locator(".parent-result")).to_contain_text("Research Coral reefs")

    # The crew graph: parents left of children, each node a link to its job.
    nodes = page.locator("#graph a")
    expect(nodes).to_have_count(2)
    expect(page.locator("#graph path.edge")).to_have_count(1)
    research = page.locator(f'#graph a[href="/jobs/{research_id}"]')
    brief = page.locator(f'#graph a[href="/jobs/{brief_id}"]')
    expect(brief).to_have_attribute("aria-current", "page")
    assert research.bounding_box()["x"] < brief.bounding_box()["x"]
    research.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/jobs/{research_id}$"))
    expect(page.get_by_role("heading", name="Research Coral reefs")).to_be_visible()
    page.go_back()
    expect(page.get_by_role("heading", name="Brief: Coral reefs")).to_be_visible()

    # Comments: an empty one is refused here; a double click adds one.
    page.get_by_role("button", name="Comment").click()
    expect(page.locator("#comment-error")).to_have_text("Write something first.")
    page.get_by_label("Add a comment").fill("Good enough for the board meeting.")
    page.get_by_role("button", name="Comment").dblclick()
    expect(page.locator("#comments .comment")).to_have_count(1)
    expect(page.locator("#comments .comment")).to_contain_text("Good enough for the board meeting.")
    expect(page.locator("#timeline .kind-comment")).to_have_count(1)
    expect(page.get_by_label("Add a comment")).to_have_value("")
    assert len(job(context, brief_id)["comments"]) == 1
