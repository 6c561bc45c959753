"""The browser client's pages: HTML shells that load plain JS modules from
``/static/``. Everything they show comes from the HTTP API; nothing is
rendered into the HTML here, and no request leaves the server's origin.

Adding a page ``<name>``:

1. ``web/pages/<name>.html``: copy the head of ``chat.html`` (charset,
   viewport, title, ``/static/app.css``, one ``<script type="module"
   src="/static/<name>.js">``), then ``<header id="shell"></header>`` and
   ``<main id="main">`` with the page's static markup. No inline scripts or
   ``style`` attributes: the CSP below refuses them; use classes from
   ``app.css``.
2. ``web/static/<name>.js``: ``const me = await startShell({ page: "<name>" })``
   (from ``/static/shell.js``) renders the header and resolves to the
   signed-in user; then the page's own code, using ``api.js`` for JSON,
   ``sse.js`` for streams and ``render.js`` for session logs. Add the page to
   ``NAV`` in ``shell.js`` if it belongs in the main navigation.
3. An entry in ``SIGNED_IN_PAGES`` below (or a route of its own if the page
   is public). The page reads its parameters (a job id in the path, say)
   from ``location`` itself.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import trio
from quart import Blueprint, Response, redirect, request, send_from_directory
from werkzeug.exceptions import NotFound

from crewboard.web.auth.guards import login_required
from crewboard.web.errors import error_body
from crewboard.web.redirects import safe_next

bp = Blueprint("pages", __name__)

PAGES = Path(__file__).parent / "pages"
STATIC = Path(__file__).parent / "static"

# A strict policy for every page: nothing leaves this origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


async def _page(name: str) -> Response:
    # Read on a worker thread: file reads block, and the event loop serves every stream.
    html = await trio.Path(PAGES / name).read_text(encoding="utf-8")
    response = Response(html, content_type="text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/")
async def landing():
    return await _page("landing.html")


@bp.get("/login")
async def login_page():
    raw = request.args.get("next")
    if raw is not None and safe_next(raw) is None:
        # Off-site or disguised: sign in, then go to the default page.
        kept = [(k, v) for k, v in request.args.items(multi=True) if k != "next"]
        return redirect("/login" + (f"?{urlencode(kept)}" if kept else ""))
    return await _page("login.html")


# Pages for signed-in users: the path and the shell it serves. Each shell's
# script reads what it needs (a job's id, say) from the URL and the API.
SIGNED_IN_PAGES = {
    "/profile": "profile.html",
    "/chat": "chat.html",
    "/board": "board.html",
    "/jobs/<id:job_id>": "job.html",
    "/templates": "templates.html",
    "/schedules": "schedules.html",
}


def _signed_in_page(name: str):
    @login_required
    async def view(**_ids: int) -> Response:
        return await _page(name)

    return view


for _path, _name in SIGNED_IN_PAGES.items():
    bp.add_url_rule(_path, f"page_{_name.removesuffix('.html')}", _signed_in_page(_name))


def _wants_html() -> bool:
    """A browser asking for a page (not the API, not a client that prefers
    JSON or takes anything: curl's ``*/*`` gets JSON)."""
    if request.path.startswith("/api/"):
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


@bp.app_errorhandler(NotFound)
async def not_found(_exc: NotFound):
    """No such route: a page with a way back for a browser, the JSON error
    for everyone else."""
    if _wants_html():
        response = await _page("404.html")
        response.status_code = 404
        return response
    return error_body(404, "not_found", "no such route")


@bp.get("/favicon.ico")
async def favicon():
    # Browsers ask for it on pages that name no icon (Swagger UI, say).
    response = await send_from_directory(STATIC, "favicon.svg", mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "max-age=86400"
    return response


@bp.get("/static/<path:filename>")
async def static_file(filename: str):
    response = await send_from_directory(STATIC, filename)
    response.headers["Cache-Control"] = "no-cache"
    return response
