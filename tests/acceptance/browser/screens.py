"""The two screens the browser tests check a page at (a laptop's and a
phone's width), and whether an element is on screen there."""

from __future__ import annotations

WIDTHS = [1366, 375]


def at_width(page, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 760 if width < 500 else 860})


def on_screen(locator) -> bool:
    """Whether the element is wholly inside the viewport (to a pixel's rounding)."""
    return locator.evaluate(
        "n => { const r = n.getBoundingClientRect();"
        " return r.top >= -1 && r.bottom <= window.innerHeight + 1 && r.height > 0; }"
    )
