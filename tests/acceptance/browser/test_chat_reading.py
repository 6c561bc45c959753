"""Chat as a newcomer reads it, at a laptop's and a phone's width: a refused
message is explained next to the composer and where its turn would have
been; answers are Markdown while they stream, code is highlighted and can
be copied; the Thinking fold only holds real work; a second tab follows a
turn the first one started; the sidebar says Loading… until it knows."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.acceptance.browser.screens import WIDTHS, at_width, on_screen
from tests.acceptance.browser.test_chat import INTRO, send
from tests.support.waits import wait_until

pytestmark = pytest.mark.browser


def paste(page, text: str) -> None:
    """Put a long text in the composer at once, as a paste does."""
    page.get_by_label("Message").evaluate("(box, text) => { box.value = text; }", text)


def conversation(page, turns: int) -> None:
    """A conversation long enough that its top is far off screen."""
    for n in range(turns):
        send(page, f"Turn {n}\n\n" + "A line of a long answer.\n\n" * 12)
        expect(page.locator(".turn .answer.rendered")).to_have_count(n + 1)


@pytest.mark.parametrize("width", WIDTHS)
def test_a_message_too_long_is_explained_where_it_was_written(page, watch, width):
    # Chromium logs each refused request as a failed resource load.
    watch.allow_console("status of 422")
    watch.allow_console("status of 413")
    at_width(page, width)
    page.goto("/chat")
    conversation(page, 3)
    assert (
        page.evaluate("document.scrollingElement.scrollHeight") > 2 * page.viewport_size["height"]
    )

    paste(page, "x" * 150_000)
    page.get_by_role("button", name="Send").click()
    said = "message too long: 150,000 characters, the limit is 100,000"
    box = page.locator("#composer-error")
    expect(box).to_have_text(f"Not sent: {said}.")
    assert on_screen(box), "the error is off screen"
    # In the transcript, where the turn would have been; the text is kept.
    expect(page.locator(".transcript > :last-child")).to_have_text(f"Not sent: {said}.")
    expect(page.locator(".turn")).to_have_count(3)
    expect(page.get_by_label("Message")).to_have_attribute("aria-invalid", "true")
    assert page.get_by_label("Message").evaluate("b => b.value.length") == 150_000

    # Over the server's body limit (413) it still says what is wrong.
    # (Just over the default 1 MiB: laying out a text this long is slow on a phone.)
    paste(page, "y" * 1_050_000)
    page.get_by_role("button", name="Send").click(timeout=30_000)
    expect(box).to_have_text(
        re.compile(
            r"^Not sent: message too long: 1,050,000 characters; "
            r"the server takes at most [\d,]+ bytes"
        ),
        timeout=30_000,
    )
    assert on_screen(box)

    # A message that fits goes through, and the errors go.
    page.get_by_label("Message").fill("Short again")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".turn")).to_have_count(4)
    expect(box).to_be_hidden()
    expect(page.locator(".refused")).to_have_count(0)


@pytest.mark.parametrize("width", WIDTHS)
def test_a_reply_still_being_written_elsewhere_is_named(page, context, watch, width):
    watch.allow_console("ERR_FAILED")  # the second tab's follow stream, cut below
    watch.allow_console("status of 409")
    at_width(page, width)
    page.goto("/chat")
    page.get_by_label("Session name").fill(f"busy {width}")
    send(page, "First")
    expect(page.locator(".answer.rendered")).to_contain_text("First")

    # A tab that has not heard of the turn (its follow stream is cut).
    other = context.new_page()
    at_width(other, width)
    other.route(re.compile(r".*/api/session/replay/.*follow=true.*"), lambda route: route.abort())
    other.goto(f"/chat?session=busy%20{width}")
    expect(other.locator(".answer.rendered")).to_contain_text("First")

    # Long enough that the other tab sends while it runs, however busy the machine.
    send(page, "Slowly\n/sleep 10")
    expect(page.get_by_text("Working…")).to_be_visible()
    send(other, "Me too")
    said = "Not sent: a reply is still being written in another tab — wait or stop it."
    expect(other.locator("#composer-error")).to_have_text(said)
    assert on_screen(other.locator("#composer-error"))
    expect(other.locator(".refused")).to_have_text(said)
    expect(other.get_by_label("Message")).to_have_value("Me too")


@pytest.mark.parametrize("width", WIDTHS)
def test_a_second_tab_follows_a_turn_the_first_one_started(page, context, width):
    at_width(page, width)
    page.goto("/chat")
    page.get_by_label("Session name").fill(f"two tabs {width}")
    send(page, "Hello")
    expect(page.locator(".answer.rendered")).to_contain_text("Hello")

    other = context.new_page()
    at_width(other, width)
    other.goto(f"/chat?session=two%20tabs%20{width}")
    expect(other.locator(".turn")).to_have_count(1)

    send(page, "Watch this\n/sleep 2")
    turn = other.locator(".turn").nth(1)
    expect(turn.locator(".message.user")).to_contain_text("Watch this")
    expect(turn.get_by_text("Working…")).to_be_visible()
    expect(other.get_by_role("button", name="Stop")).to_be_visible()
    expect(other.get_by_role("button", name="Send")).to_be_disabled()
    expect(turn.locator(".answer.rendered")).to_contain_text(INTRO, timeout=8000)
    expect(other.get_by_role("button", name="Send")).to_be_enabled()
    expect(other.locator(".turn")).to_have_count(2)
    expect(page.locator(".turn")).to_have_count(2)


def test_typing_while_the_page_starts_keeps_the_focus_where_it_is(page):
    # Hold the page's start-up (it waits for the agents) while a quick
    # typist names the session.
    held = []
    page.route("**/api/agents", lambda route: held.append(route))
    with page.expect_request("**/api/agents"):
        page.goto("/chat")
    name = page.get_by_label("Session name")
    name.click()
    name.press_sequentially("quick")
    assert held, "the start-up was not held"
    held[0].continue_()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    # Started: the next keys still go where the typist is.
    page.keyboard.type(" typist")
    expect(name).to_have_value("quick typist")
    expect(page.get_by_label("Message")).to_have_value("")
    send(page, "Hello")
    expect(page.locator("#session-title")).to_have_text("quick typist")


STREAM = """async (chunks) => {
  const { Transcript } = await import("/static/render.js");
  const box = document.createElement("div");
  box.id = "stream-test";
  document.body.append(box);
  const view = new Transcript(box);
  view.userMessage("show me");
  let seq = 1;
  for (const text of chunks) view.frame({ id: ++seq, type: "chunk", data: { type: "text", text } });
  const live = box.querySelector(".answer.streaming");
  // Rendering is batched (and waits for markdown.js on a cold page): wait for it.
  const deadline = performance.now() + 5000;
  while (!live.querySelector("pre code.hljs") && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const seen = {
    html: live.innerHTML,
    strong: live.querySelector("strong")?.textContent ?? null,
    highlighted: live.querySelectorAll("pre code.hljs span[class^='hljs-']").length,
    copy: live.querySelectorAll("button.copy-code").length,
    images: box.querySelectorAll("img").length,
    scripts: box.querySelectorAll("script").length,
    links: [...live.querySelectorAll("a")].map((a) => [a.getAttribute("href"), a.rel]),
    thinkingHidden: box.querySelector("details.thinking").hidden,
  };
  return seen;
}"""


@pytest.mark.parametrize("width", WIDTHS)
def test_markdown_renders_while_it_streams_and_stays_safe(page, width):
    at_width(page, width)
    page.goto("/chat")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    chunks = [
        "Here is **bo",
        "ld** text and code:\n\n```python\ndef f(x):\n    return x",
        " + 1\n",
        "```\n\n<img src=x onerror=alert(1)> <script>alert(2)</script>\n\n",
        "[safe](https://example.test/) [bad](javascript:alert(3)) ![pic](https://example.test/p.png)",
    ]
    seen = page.evaluate(STREAM, chunks)
    # Still streaming (no final result): already Markdown, not raw asterisks.
    assert seen["strong"] == "bold"
    assert "**" not in seen["html"]
    assert seen["highlighted"] > 0 and seen["copy"] == 1
    assert seen["images"] == 0 and seen["scripts"] == 0
    hrefs = [href for href, _ in seen["links"]]
    assert "https://example.test/" in hrefs and "https://example.test/p.png" in hrefs
    assert not any(href and href.lower().startswith("javascript") for href in hrefs)
    assert all(rel == "noopener nofollow" for href, rel in seen["links"] if href)
    assert seen["thinkingHidden"]
    expect(page.locator("#stream-test .answer.streaming")).to_contain_text("<img src=x")


@pytest.mark.parametrize("width", WIDTHS)
def test_code_in_an_answer_is_highlighted_and_copied(page, context, width):
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    at_width(page, width)
    page.goto("/chat")
    send(page, "```python\nimport os\nprint(os.getcwd())\n```")
    answer = page.locator(".answer.rendered")
    expect(answer).to_contain_text(INTRO)
    code = answer.locator(".code-block pre code.hljs")
    expect(code).to_have_count(1)
    expect(code.locator("span.hljs-keyword").first).to_have_text("import")
    answer.get_by_role("button", name="Copy the code").click()
    expect(answer.get_by_role("button", name="Copy the code")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == "import os\nprint(os.getcwd())\n"
    width_used = page.evaluate("document.documentElement.scrollWidth")
    assert width_used <= width, f"the page scrolls sideways ({width_used}px wide)"


@pytest.mark.parametrize("width", WIDTHS)
def test_the_thinking_fold_holds_only_real_work(page, width):
    at_width(page, width)
    page.goto("/chat")
    send(page, "Just answer")
    first = page.locator(".turn").nth(0)
    expect(first.locator(".answer.rendered")).to_contain_text(INTRO)
    expect(first.locator("details.thinking")).to_be_hidden()

    send(page, "Look first\n/tool list_files {}")
    second = page.locator(".turn").nth(1)
    expect(second.locator(".answer.rendered")).to_contain_text(INTRO)
    expect(second.locator("details.thinking summary")).to_have_text("Thinking · 1 tool call")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_sidebar_says_loading_until_it_knows_and_the_model_shows_in_full(page, width):
    at_width(page, width)
    held = []
    page.route("**/api/session/names", lambda route: held.append(route), times=1)
    page.goto("/chat")
    # Calls into the page let Playwright run the route handler.
    wait_until(
        lambda: page.evaluate("1") and held, 10, "the page to ask for its sessions", every_s=0.02
    )
    expect(page.locator("#sessions-empty")).to_have_text("Loading…")
    expect(page.get_by_text("No saved sessions yet.")).to_have_count(0)
    held[0].continue_()
    expect(page.locator("#sessions-empty")).to_have_text("No saved sessions yet.")

    picker = page.get_by_label("Model")
    spec = picker.input_value()
    full = page.locator("#model-full")
    expect(full).to_have_text(spec)
    assert full.evaluate("n => n.scrollWidth <= n.clientWidth + 1"), "the model name is cut off"
