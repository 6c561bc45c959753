"""The browser client's pages: HTML shells that load plain JS modules from
``/static/``. Everything they show comes from the HTTP API."""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, send_from_directory

from crewboard.web.auth.guards import login_required

bp = Blueprint("pages", __name__)

PAGES = Path(__file__).parent / "pages"
STATIC = Path(__file__).parent / "static"

# A strict policy for every page: nothing leaves this origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _page(name: str) -> Response:
    response = Response((PAGES / name).read_text(encoding="utf-8"), content_type="text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/")
async def landing():
    return _page("landing.html")


@bp.get("/login")
async def login_page():
    return _page("login.html")


@bp.get("/profile")
@login_required
async def profile_page():
    return _page("profile.html")


@bp.get("/static/<path:filename>")
async def static_file(filename: str):
    response = await send_from_directory(STATIC, filename)
    response.headers["Cache-Control"] = "no-cache"
    return response
