"""``/openapi/``: Swagger UI (served offline from the swagger-ui-py package,
with ``validatorUrl: null`` so it calls nowhere) and the raw ``openapi.yaml``.
Swagger's own files are static assets under ``/static/swagger/``; its start
script is one of them too (no inline script), so the page's
Content-Security-Policy lets nothing but this origin's files run."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import swagger_ui
from quart import Blueprint, Response, send_from_directory

bp = Blueprint("openapi", __name__)

SWAGGER_STATIC = Path(swagger_ui.__file__).parent / "static"
SPEC_PATH = importlib.resources.files("crewboard") / "_shipped" / "openapi.yaml"

_INDEX = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>crewboard API</title>
<link rel="stylesheet" href="/static/swagger/swagger-ui.css">
<link rel="icon" href="/static/swagger/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/static/swagger/swagger-ui-bundle.js"></script>
<script src="/static/swagger/swagger-init.js"></script>
</body>
</html>
"""

# Swagger UI's needs, no more: its script and styles from here, the data:
# images its stylesheet embeds, and requests to this server ("Try it out").
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

_SWAGGER_OPTIONS = {
    "url": "/openapi/openapi.yaml",
    "dom_id": "#swagger-ui",
    "validatorUrl": None,
    "deepLinking": True,
    "withCredentials": True,
}
_INIT = f"window.ui = SwaggerUIBundle({json.dumps(_SWAGGER_OPTIONS)});\n"


def spec_text() -> str:
    return SPEC_PATH.read_text(encoding="utf-8")


@bp.get("/openapi/")
async def index():
    response = Response(_INDEX, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = CSP
    return response


@bp.get("/openapi/openapi.yaml")
async def raw_spec():
    return Response(spec_text(), content_type="application/yaml; charset=utf-8")


@bp.get("/static/swagger/swagger-init.js")
async def swagger_init():
    return Response(_INIT, content_type="text/javascript; charset=utf-8")


@bp.get("/static/swagger/<path:filename>")
async def swagger_static(filename: str):
    return await send_from_directory(SWAGGER_STATIC, filename)
