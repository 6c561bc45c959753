"""``/login?next=`` on the live server: an unsafe ``next``, in any encoding,
is dropped before the sign-in page's script can follow it (the script checks
too: tests/acceptance/browser/test_redirects.py)."""

from __future__ import annotations

from tests.support.hostile import HOSTILE_NEXT

SAFE_NEXT = ["/board", "/jobs/12", "/board%3Fstatus%3Dready", "/schedules#new", "/"]


async def test_an_unsafe_next_is_dropped_and_a_safe_one_kept(anon):
    for next_ in [*HOSTILE_NEXT, "/%E2%80%AE/x", "/a%00", "/a%7F"]:
        response = await anon.get(f"/login?next={next_}&error=kept")
        assert response.status_code == 302, next_
        assert response.headers["location"] == "/login?error=kept"
    for next_ in SAFE_NEXT:
        response = await anon.get(f"/login?next={next_}")
        assert response.status_code == 200, next_
        assert response.headers["content-type"].startswith("text/html")
