"""Where a page may send the browser next: ``?next=`` on ``/login`` names a
path on this site, and nothing else, however it is encoded.

A safe ``next`` (as the query decodes it) starts with exactly one ``/``, has
no backslash (browsers read ``\\`` as ``/``, so ``/\\evil.example`` is
another host) and no control, whitespace or invisible formatting character
(browsers drop tabs and newlines from a URL, so ``/\\t/evil.example`` becomes
``//evil.example``), no empty or dot segment (``/.//evil.example`` resolves
to ``//evil.example``), and no scheme can hide in it. The login page's script
(``static/login.js``) applies the same rule before it navigates; the page's
route refuses an unsafe ``next`` before the script ever sees it.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

# Invisible characters a browser may ignore or a reader may not see.
_FORMAT_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
MAX_NEXT_CHARS = 2000


def safe_next(raw: str | None) -> str | None:
    """``raw`` if it is a same-origin path to go to, else None."""
    if not raw or len(raw) > MAX_NEXT_CHARS:
        return None
    if not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return None
    if any(ch.isspace() or unicodedata.category(ch) in _FORMAT_CATEGORIES for ch in raw):
        return None
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return None
    # Dot segments and empty ones: "/.//x" resolves to "//x", another host.
    segments = parts.path.split("/")[1:]
    if any(segment in ("", ".", "..") for segment in segments[:-1]) or segments[-1] in (".", ".."):
        return None
    return raw
