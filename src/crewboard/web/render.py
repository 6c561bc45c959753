"""Markdown to safe HTML for agent answers, rendered on the server so the
browser only ever inserts sanitised markup.

Two layers, so that a gap in one is not a hole: markdown-it-py renders with
raw HTML off (a ``<script>`` in the text comes out as text) and refuses
``javascript:``-style links; nh3 then keeps only an allow-list of tags,
attributes and URL schemes, and marks every link ``rel="noopener nofollow"``.
Images are rendered as links: an image the browser fetches by itself could
carry the conversation to whoever serves it.

Rendering is CPU work that grows with the text: callers render large texts
on a worker thread (:class:`crewboard.web.sse.LazyFrame`, ``trio.to_thread``),
never on the event loop. A thread is not enough for a very large text:
markdown-it is pure Python, and a thread rendering 1 MiB of paragraphs holds
the GIL for seconds, slowing every request of the web process two- to
threefold. So a text over :data:`CHILD_RENDER_CHARS` is rendered by a short-lived
child process (``python -m crewboard.web.render``, text on stdin, HTML on
stdout) while the calling thread waits without the GIL.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

log = logging.getLogger(__name__)

# Texts longer than this (in characters) are rendered in a child process. Its
# start costs about 0.1 s of CPU, about what rendering this much costs here.
CHILD_RENDER_CHARS = 64 * 1024

LINK_REL = "noopener nofollow"
URL_SCHEMES = frozenset({"http", "https", "mailto"})
TAGS = frozenset(
    {
        "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6",
        "hr", "li", "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead",
        "tr", "ul",
    }
)  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "ol": {"start"},
    "td": {"style"},
    "th": {"style"},
}
# markdown-it aligns table cells with inline styles; keep nothing else.
STYLE_PROPERTIES = frozenset({"text-align"})


def _image_as_link(
    renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = renderer.renderInlineAsText(token.children or [], options, env) or src
    return f'<a href="{escapeHtml(src)}">{escapeHtml(alt)}</a>'


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("image", _image_as_link)
    return md


_MD = _markdown()


def sanitize_html(html: str) -> str:
    """Keep only the allow-listed markup of ``html``."""
    return nh3.clean(
        html,
        tags=set(TAGS),
        attributes={tag: set(attrs) for tag, attrs in ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        filter_style_properties=set(STYLE_PROPERTIES),
        strip_comments=True,
    )


def render_markdown(text: str) -> str:
    """An agent's Markdown as HTML that is safe to insert into a page; a
    large text is rendered in a child process (see the module docstring), so
    call this from a worker thread when the text may be large."""
    if not isinstance(text, str) or not text:
        return ""
    if len(text) > CHILD_RENDER_CHARS:
        rendered = _render_in_child(text)
        if rendered is not None:
            return rendered
    return _render(text)


def _render(text: str) -> str:
    return sanitize_html(_MD.render(text))


def _render_in_child(text: str) -> str | None:
    """``text`` rendered by ``python -m crewboard.web.render``; None if the
    child could not do it, and the caller then renders it itself (a text the
    child cannot take fails there the same way)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", __name__],
            input=text.encode("utf-8", "surrogatepass"),
            capture_output=True,
            check=True,
        )
        return done.stdout.decode("utf-8", "surrogatepass")
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.warning("rendering %d characters in a child process failed: %s", len(text), exc)
        return None


def _render_stdin() -> None:
    text = sys.stdin.buffer.read().decode("utf-8", "surrogatepass")
    sys.stdout.buffer.write(_render(text).encode("utf-8", "surrogatepass"))


if __name__ == "__main__":
    _render_stdin()
