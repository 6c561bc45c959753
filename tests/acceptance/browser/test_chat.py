"""Chat in the browser: a turn streams in live, survives a reload, and saved
sessions replay through the same renderer. The offline model's directives
(``/tool``, ``/sleep``) script what the agent does."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.acceptance.browser.conftest import HeldBack

pytestmark = pytest.mark.browser

INTRO = "[offline model]"


def send(page, text: str) -> None:
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")


def test_a_turn_streams_tool_calls_then_the_rendered_answer(page):
    page.goto("/chat")
    expect(page.get_by_label("Agent")).to_have_value("assistant")
    expect(page.get_by_label("Model")).to_have_value("offline:scripted")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()  # the page is ready
    page.get_by_label("Session name").fill("first steps")
    expect(page.get_by_label("Session name")).to_have_value("first steps")
    send(
        page,
        'Keep a note\n/tool write_file {"path": "note.txt", "content": "hello"}\n/sleep 1.5',
    )

    turn = page.locator(".turn").last
    expect(turn.locator(".message.user")).to_contain_text("Keep a note")
    # While the model "thinks", the tool call and its result are already shown.
    thinking = turn.locator("details.thinking")
    expect(thinking.locator("summary")).to_contain_text("1 tool call")
    expect(turn.get_by_text("Working…")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    expect(thinking.locator(".step.tool pre.result")).to_be_hidden()  # collapsed
    thinking.locator("summary").click()
    expect(thinking.locator(".step.tool code")).to_have_text("write_file")
    expect(thinking.locator(".step.tool pre.result")).to_have_text(
        re.compile(r"wrote 5 bytes to note\.txt")
    )

    # The answer ends the turn as the server's rendered HTML.
    answer = turn.locator(".answer.rendered")
    expect(answer).to_contain_text(INTRO)
    expect(answer.locator("blockquote")).to_contain_text("Keep a note")
    expect(turn.get_by_text("Working…")).to_have_count(0)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page).to_have_url(re.compile(r"/chat\?session=first%20steps$"))
    sidebar = page.locator("#sessions")
    expect(sidebar.get_by_role("link", name=re.compile("^first steps"))).to_have_attribute(
        "aria-current", "page"
    )

    # The session continues: a second turn under the first.
    send(page, "And another thing")
    expect(page.locator(".turn")).to_have_count(2)
    expect(page.locator(".turn").last.locator(".answer.rendered")).to_contain_text(
        "And another thing"
    )


def test_reloading_during_a_turn_picks_it_up_where_it_was(page):
    page.goto("/chat")
    # Long enough to outlast a reload of the page, vendored libraries and all.
    send(page, "Take your time\n/sleep 5")
    expect(page.get_by_text("Working…")).to_be_visible()
    # The agent has started (its first step streamed in): the turn is running.
    expect(page.locator(".turn .step.agent")).to_be_attached()
    expect(page).to_have_url(re.compile(r"/chat\?session="))

    page.reload()
    # The replay shows the turn so far and follows it to its end.
    expect(page.locator(".turn")).to_have_count(1)
    turn = page.locator(".turn")
    expect(turn.locator(".message.user")).to_have_text(re.compile("Take your time"))
    expect(turn.get_by_text("Working…")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(turn.locator(".answer.rendered")).to_contain_text(INTRO, timeout=12000)
    expect(turn.get_by_text("Working…")).to_have_count(0)
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()

    # The session is free again: the next message is taken at once.
    send(page, "Done?")
    expect(page.locator(".turn")).to_have_count(2)
    expect(page.locator(".turn").last.locator(".answer.rendered")).to_contain_text("Done?")


def test_saved_sessions_replay_and_can_be_deleted(page):
    page.goto("/chat")
    expect(page.locator("#sessions-empty")).to_have_text("No saved sessions yet.")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()  # the page is ready
    page.get_by_label("Session name").fill("recipes")
    expect(page.get_by_label("Session name")).to_have_value("recipes")
    send(page, "Soup, please")
    expect(page.locator(".answer.rendered")).to_contain_text("Soup, please")

    page.get_by_role("button", name="New chat").click()
    expect(page).to_have_url(re.compile(r"/chat$"))
    expect(page.locator(".turn")).to_have_count(0)
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()

    page.get_by_role("link", name=re.compile("^recipes")).click()
    expect(page.get_by_role("heading", name="recipes")).to_be_visible()
    expect(page.locator(".turn .message.user .text")).to_have_text("Soup, please")
    expect(page.locator(".turn .answer.rendered")).to_contain_text(INTRO)

    # Back goes to the new chat, forward to the session again.
    page.go_back()
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()
    page.go_forward()
    expect(page.locator(".turn .message.user .text")).to_have_text("Soup, please")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete session").click()
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()
    expect(page.locator("#session-list li")).to_have_count(0)
    expect(page.locator("#sessions-empty")).to_be_visible()


def test_agent_output_is_text_unless_sanitised_by_the_server(page):
    page.goto("/chat")
    send(page, '<img src="/static/x.png" onerror="alert(1)"> **bold** <script>alert(2)</script>')
    turn = page.locator(".turn")
    expect(turn.locator(".answer.rendered")).to_contain_text(INTRO)
    # The user's message is shown as typed; the answer quotes it as text.
    expect(turn.locator(".message.user")).to_contain_text('<img src="/static/x.png"')
    expect(turn.locator(".answer.rendered strong")).to_have_text("bold")
    expect(page.locator("img, script:not([src])")).to_have_count(0)


def test_chat_works_on_a_phone_sized_screen(page):
    page.set_viewport_size({"width": 375, "height": 740})
    # The sidebar's toggle answers the first tap, before the page has heard
    # who is signed in.
    who = HeldBack(page, "**/auth/me")
    page.goto("/chat")
    toggle = page.get_by_role("button", name="Saved sessions")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(page.get_by_role("button", name="New chat")).to_be_hidden()
    toggle.click()
    expect(page.get_by_role("button", name="New chat")).to_be_visible()
    assert who.held, "the page asked who is signed in"
    who.release()
    toggle.click()
    send(page, "Small screens too")
    expect(page.locator(".answer.rendered")).to_contain_text("Small screens too")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways ({width}px wide)"


@pytest.mark.parametrize("frames_before_cut", [0, 2])
def test_a_stream_cut_mid_turn_resumes_from_the_log_without_repeats(page, frames_before_cut):
    """The reply's stream breaks early (a proxy cut it, say): the page asks
    the session's replay for what came after the last event it saw, with
    Last-Event-ID, and shows each step once."""
    cut: dict[str, object] = {}

    def cut_short(route):
        response = route.fetch()
        events = [e for e in response.text().split("\n\n") if e.startswith("id: ")]
        kept = events[:frames_before_cut]
        cut["last_id"] = kept[-1].split("\n", 1)[0].removeprefix("id: ") if kept else None
        route.fulfill(response=response, body="".join(f"{e}\n\n" for e in kept))

    page.route("**/api/session/newUserMessage/*", cut_short)
    replays = []
    page.on(
        "request",
        lambda r: (
            "/api/session/replay/" in r.url
            and "follow=true" not in r.url
            and replays.append(r.headers.get("last-event-id"))
        ),
    )
    page.goto("/chat")
    send(page, "Look around\n/tool list_files {}\n/sleep 1")

    turn = page.locator(".turn")
    expect(turn.locator(".answer.rendered")).to_contain_text(INTRO)
    assert replays == [cut["last_id"]]
    expect(turn).to_have_count(1)
    expect(turn.locator(".message.user")).to_have_count(1)
    expect(turn.locator(".step.tool")).to_have_count(1)
    expect(turn.locator(".step.agent")).to_have_count(1)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


def test_table_alignment_survives_the_strict_content_security_policy(page):
    # The server keeps text-align on table cells; the page's CSP refuses
    # inline styles (a console error, which fails the test), so it must come
    # through as a class.
    page.goto("/chat")
    send(page, "| item | price |\n|:--|--:|\n| tea | 3 |")
    cell = page.locator(".answer.rendered td").last
    expect(cell).to_have_text("3")
    assert cell.evaluate("c => getComputedStyle(c).textAlign") == "right"
