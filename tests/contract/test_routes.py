"""The route table and openapi.yaml, both ways: every route the app serves
under ``/auth``, ``/api`` and ``/openapi``, and the health probes, is in the
document with that method, and every operation in the document is served."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from crewboard.home import Home
from crewboard.web.app import create_app
from crewboard.web.openapi import spec_text
from tests.conftest import make_config

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board

DOCUMENTED_PREFIXES = ("/auth/", "/api/", "/openapi/")
# Routes outside those prefixes that are part of the contract too.
DOCUMENTED_PATHS = ("/auth", "/api", "/openapi", "/healthz", "/readyz", "/metrics")
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})

_RULE_PARAM = re.compile(r"<(?:(?P<converter>[^:<>]+):)?(?P<name>[^<>]+)>")
_SPEC_PARAM = re.compile(r"\{(?P<name>[^{}]+)\}")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def openapi_path(rule: str) -> str:
    """A werkzeug rule in OpenAPI spelling: ``/api/jobs/<id:job_id>`` becomes
    ``/api/jobs/{jobId}``."""
    return _RULE_PARAM.sub(lambda m: "{" + _camel(m["name"]) + "}", rule)


def shape(path: str) -> str:
    """A path with its parameter names erased, so ``{id}`` and ``{scheduleId}``
    in the same place compare equal."""
    return _SPEC_PARAM.sub("{}", path)


def _documented(path: str) -> bool:
    return path.startswith(DOCUMENTED_PREFIXES) or path in DOCUMENTED_PATHS


def load_spec() -> dict:
    return yaml.safe_load(spec_text())


def spec_operations(spec: dict) -> dict[tuple[str, str], dict]:
    return {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method.upper() in HTTP_METHODS
    }


def app_routes(tmp_path: Path) -> dict[tuple[str, str], str]:
    """(method, path shape) -> the rule, for every documented route the app serves."""
    config = make_config(tmp_path / "home")
    config.home.mkdir(parents=True)
    app = create_app(config, Home(config.home))
    routes: dict[tuple[str, str], str] = {}
    for rule in app.url_map.iter_rules():
        path = openapi_path(rule.rule)
        if not _documented(path):
            continue
        for method in rule.methods or ():
            if method in HTTP_METHODS:
                routes[(method, shape(path))] = rule.rule
    return routes


def served_spec_operations(tmp_path: Path) -> set[tuple[str, str]]:
    """The operations of openapi.yaml, as it spells them, that the app serves."""
    served = app_routes(tmp_path)
    return {(m, p) for m, p in spec_operations(load_spec()) if (m, shape(p)) in served}


@pytest.fixture(scope="module")
def spec() -> dict:
    return load_spec()


@pytest.fixture
def served(tmp_path: Path) -> dict[tuple[str, str], str]:
    return app_routes(tmp_path)


def test_rule_conversion():
    assert openapi_path("/api/jobs/<id:job_id>/stream") == "/api/jobs/{jobId}/stream"
    assert openapi_path("/api/session/replay/<session_name>") == (
        "/api/session/replay/{sessionName}"
    )
    assert shape("/api/schedules/{id}/jobs") == shape(openapi_path("/api/schedules/<id:sid>/jobs"))


def test_every_served_route_is_documented(spec, served):
    documented = {(method, shape(path)) for method, path in spec_operations(spec)}
    missing = sorted(
        f"{method} {openapi_path(rule)}"
        for (method, path_shape), rule in served.items()
        if (method, path_shape) not in documented
    )
    assert not missing, f"served but not in openapi.yaml: {missing}"


def test_every_documented_operation_is_served(spec, served):
    unbuilt = sorted(
        f"{method} {path}"
        for method, path in spec_operations(spec)
        if (method, shape(path)) not in served
    )
    assert not unbuilt, f"in openapi.yaml but not served: {unbuilt}"


def test_integer_ids_in_paths_are_routed_as_ids(spec, served):
    """An id the document types as an integer must be matched by the app's
    ``id`` converter, so ``/api/jobs/abc`` is an unknown route (404), never a
    500 from a route that gets a string."""
    ops = spec_operations(spec)
    for (method, path_shape), rule in served.items():
        path = next(p for m, p in ops if m == method and shape(p) == path_shape)
        params = {}
        for param in ops[(method, path)].get("parameters", []):
            if "$ref" in param:
                param = spec["components"]["parameters"][param["$ref"].rsplit("/", 1)[-1]]
            params[param["name"]] = param
        spec_kinds = []
        for name in _SPEC_PARAM.findall(path):
            schema = params[name]["schema"]
            if "$ref" in schema:
                schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
            spec_kinds.append(schema.get("type") == "integer")
        app_kinds = [m["converter"] == "id" for m in _RULE_PARAM.finditer(rule)]
        assert spec_kinds == app_kinds, f"{method} {path} vs rule {rule}"


def test_operations_are_complete(spec):
    """Each operation has a unique id, says its auth rule, and documents its
    errors with the one error shape."""
    ids = [op["operationId"] for op in spec_operations(spec).values()]
    assert len(ids) == len(set(ids))
    for (method, path), op in spec_operations(spec).items():
        label = f"{method} {path}"
        assert "**Auth:**" in op["description"], label
        responses = op["responses"]
        assert "500" in responses, label
        for status, response in responses.items():
            if int(status) >= 400:
                assert "$ref" in response, f"{label} {status} must use a shared error response"
        public = "**Auth:** public" in op["description"]
        assert (op.get("security") == []) == public, label
        if not public:
            assert "401" in responses, label
        if method in ("POST", "PATCH", "DELETE") and not public:
            assert "403" in responses, f"{label}: cross-origin cookie requests are 403"
        if "requestBody" in op:
            for status in ("400", "413"):
                assert status in responses, f"{label} takes a body, so answers {status}"
