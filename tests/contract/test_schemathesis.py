"""openapi.yaml against the live server, with Schemathesis: every served
operation is called with examples, boundary cases and generated requests
(valid and invalid), and each answer must be documented — status, content
type and body schema — and never a server error.

The server runs in this test's nursery; Schemathesis's engine is synchronous
(``requests``), so it runs in a worker thread while trio keeps serving. The
fuzzer acts as a signed-in user through a bearer token, with the server's own
``Origin`` on every request as a browser page would send it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import schemathesis
import trio
from schemathesis.engine import Status, events

from tests.conftest import PASSWORD, Account, client_for
from tests.contract.test_routes import (
    load_spec,
    served_spec_operations,
    spec_operations,
)

# Operations left out, and why. Everything else served is fuzzed.
NOT_FUZZED: dict[tuple[str, str], str] = {
    ("GET", "/auth/logout"): "redirects away and ends the session it is sent with",
    ("DELETE", "/api/tokens/{id}"): "would revoke the fuzzer's own token",
    ("GET", "/api/board/events"): "the change feed never ends by itself",
    ("GET", "/api/jobs/{jobId}/stream"): "waits for a run, and no supervisor runs here",
    ("GET", "/readyz"): "503 by design with no supervisor here (tests/integration/test_health.py)",
}

# A replay with ``follow`` on (``true`` or ``1``, any case or padding) never
# ends by itself either: the fuzzer sends its replays with follow=false.
FOLLOWING_REPLAY = "/api/session/replay/{sessionName}"


def _follows(value: object) -> bool:
    first = value[0] if isinstance(value, list) and value else value
    return str(first).strip().lower() in ("true", "1")


@schemathesis.hook
def before_call(ctx: object, case: schemathesis.Case, kwargs: dict) -> None:
    query = case.query
    if case.operation.path == FOLLOWING_REPLAY and query and _follows(query.get("follow")):
        query["follow"] = "false"


MAX_EXAMPLES = 25
SEED = 20261128
BUDGET_S = 40.0
REQUEST_TIMEOUT_S = 10

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
# Quart answers OPTIONS itself (200 with Allow), so it is not an unexpected method.
UNEXPECTED_METHODS = ["get", "put", "post", "delete", "patch", "trace", "query"]


@dataclass
class Report:
    tested: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stopped_early: bool = False


def schemathesis_config(base_url: str, token: str) -> schemathesis.Config:
    checks: dict[str, object] = {"enabled": False}
    checks.update({name: {"enabled": True} for name in CHECKS})
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "cache": {"enabled": False},
            "base-url": base_url,
            "headers": {"Origin": base_url},
            "auth": {"openapi": {"bearerAuth": {"bearer": token}}},
            "workers": 1,
            "request-timeout": REQUEST_TIMEOUT_S,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {
                "coverage": {"unexpected-methods": UNEXPECTED_METHODS},
                "stateful": {"enabled": False},
            },
            "checks": checks,
        }
    )


def fuzzed_operations(served_ops: set[tuple[str, str]]) -> dict[str, str]:
    """operationId -> "METHOD /path" of every operation to fuzz."""
    return {
        op["operationId"]: f"{method} {path}"
        for (method, path), op in spec_operations(load_spec()).items()
        if (method, path) in served_ops and (method, path) not in NOT_FUZZED
    }


def run_schemathesis(base_url: str, token: str, operation_ids: list[str]) -> Report:
    """Run the engine over ``operation_ids`` (blocking: call it in a thread).
    Past ``BUDGET_S`` the run is stopped and what it found so far is kept."""
    config = schemathesis_config(base_url, token)
    schema = schemathesis.openapi.from_url(
        f"{base_url}/openapi/openapi.yaml", config=config, timeout=REQUEST_TIMEOUT_S
    )
    schema = schema.include(operation_id=operation_ids)
    report = Report()
    started = time.monotonic()
    stream = schemathesis.engine.from_schema(schema).execute()
    for event in stream:
        if not report.stopped_early and time.monotonic() - started > BUDGET_S:
            report.stopped_early = True
            stream.stop()
        if isinstance(event, events.ScenarioFinished):
            if event.label and event.recorder.cases:
                report.tested.add(event.label)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        report.failures.append(
                            f"[{event.phase.value}] {event.label}: {check.name}: "
                            f"{failure.title}\n{failure.message}\n"
                            f"{check.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError):
            report.errors.append(
                f"[{event.phase.value if event.phase else '-'}] {event.label}: "
                f"{event.info.title}: {event.info.message}\n{event.info.code_sample or ''}"
            )
        elif isinstance(event, events.FatalError):
            report.errors.append(f"fatal: {event.exception!r}")
    return report


@pytest.fixture
def served_operations(tmp_path: Path) -> set[tuple[str, str]]:
    return served_spec_operations(tmp_path / "routes")


async def _bearer_token(base_url: str, account: Account) -> str:
    async with client_for(base_url) as client:
        signed_in = await client.post(
            "/auth/login", json={"email": account.email, "password": PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        created = await client.post("/api/tokens", json={"name": "contract fuzzer"})
        assert created.status_code == 201, created.text
        return created.json()["token"]


async def _seed_board(base_url: str, token: str, served: set[tuple[str, str]]) -> None:
    """Give the fuzzer's small ids something to find: a crew and a schedule of
    the caller's."""
    inputs = {"question": "What is a crew?"}
    seeds = {
        "/api/jobs": {"templateId": "ask", "inputs": inputs},
        "/api/schedules": {
            "name": "contract",
            "templateId": "ask",
            "inputs": inputs,
            "rule": "@daily",
            "timezone": "UTC",
        },
    }
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        for path, body in seeds.items():
            if ("POST", path) in served:
                response = await client.post(path, json=body)
                assert response.status_code == 201, response.text


async def test_served_operations_conform_to_openapi(server, alice, served_operations):
    token = await _bearer_token(server, alice)
    await _seed_board(server, token, served_operations)
    fuzzed = fuzzed_operations(served_operations)
    report = await trio.to_thread.run_sync(run_schemathesis, server, token, sorted(fuzzed))

    problems = report.failures + report.errors
    assert not problems, f"{len(problems)} problem(s):\n\n" + "\n\n".join(problems)
    untested = sorted(set(fuzzed.values()) - report.tested)
    assert report.stopped_early or not untested, f"never called: {untested}"


def test_not_fuzzed_names_only_documented_operations():
    unknown = set(NOT_FUZZED) - set(spec_operations(load_spec()))
    assert not unknown, f"NOT_FUZZED names operations openapi.yaml does not have: {unknown}"
