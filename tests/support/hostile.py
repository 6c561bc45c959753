"""Hostile values the tests of more than one tier try."""

from __future__ import annotations

# Values of ``/login?next=`` that must never send a browser off the site,
# as they appear in the address bar (percent-encoded where a URL must be).
HOSTILE_NEXT = [
    "/%09/evil.example",
    "/%0a/evil.example",
    "/%0d%0a/evil.example",
    "%09/%09/evil.example",
    "/%00/evil.example",
    "/%20/evil.example",
    "/%C2%A0/evil.example",
    "/%E3%80%80/evil.example",
    "/%E2%80%8B/evil.example",
    "//evil.example",
    "%2F%2Fevil.example",
    "/%2F/evil.example",
    "///evil.example",
    "/\\evil.example",
    "/%5Cevil.example",
    "%5C%5Cevil.example",
    "/.//evil.example",
    "/a/..//evil.example",
    "/%2e%2e//evil.example",
    "https://evil.example",
    "https:evil.example",
    "http:/evil.example",
    "javascript:alert(document.domain)",
    "data:text/html,hi",
    "evil.example",
    "@evil.example",
]
