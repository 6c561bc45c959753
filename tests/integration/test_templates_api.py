"""``GET /api/templates`` and ``GET /api/dispatcher/status`` through a live
server: what a signed-in user sees, and that both need a login."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crewboard.board import heartbeats
from crewboard.clock import utcnow
from tests.conftest import make_config
from tests.support.board_jobs import assert_conforms, write_templates

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board


@pytest.fixture
def workflows(tmp_path):
    return write_templates(tmp_path / "workflows")


@pytest.fixture
def config(tmp_path, workflows):
    return make_config(tmp_path / "home", workflows=(workflows,))


async def test_templates_list_shipped_and_extra_ones_with_their_inputs(as_alice):
    response = await as_alice.get("/api/templates")
    assert response.status_code == 200
    templates = {t["id"]: t for t in response.json()}
    assert {"ask", "research-brief", "diamond", "broken"} <= set(templates)
    for template in templates.values():
        assert_conforms(template, "Template")
    diamond = templates["diamond"]
    assert diamond["valid"] is True and "error" not in diamond
    assert diamond["inputs"]["required"] == ["topic"]
    assert diamond["inputs"]["properties"]["words"] == {
        "type": "integer",
        "default": 100,
        "minimum": 10,
        "maximum": 1000,
    }


async def test_an_invalid_template_is_listed_with_why(as_alice):
    broken = {t["id"]: t for t in (await as_alice.get("/api/templates")).json()}["broken"]
    assert broken["valid"] is False and "missing" in broken["error"]


async def test_templates_are_reloaded_when_their_files_change(as_alice, workflows):
    assert "fresh" not in {t["id"] for t in (await as_alice.get("/api/templates")).json()}
    (workflows / "fresh.job_workflow.yaml").write_text(
        "name: Fresh\njobs:\n  only:\n    prompt: Hello.\n"
    )
    listed = {t["id"]: t for t in (await as_alice.get("/api/templates")).json()}
    assert listed["fresh"]["valid"] is True
    response = await as_alice.post("/api/jobs", json={"templateId": "fresh", "inputs": {}})
    assert response.status_code == 201
    (workflows / "fresh.job_workflow.yaml").unlink()
    response = await as_alice.post("/api/jobs", json={"templateId": "fresh", "inputs": {}})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["fields"] == {"templateId": "no such template"}


async def test_dispatcher_status_without_a_supervisor(as_alice):
    await as_alice.post("/api/jobs", json={"templateId": "ask", "inputs": {"question": "q"}})
    response = await as_alice.get("/api/dispatcher/status")
    assert response.status_code == 200
    status = response.json()
    assert_conforms(status, "DispatcherStatus")
    assert status == {
        "alive": False,
        "lastHeartbeatAt": None,
        "ageSeconds": None,
        "running": 0,
        "capacity": 0,
        "ready": 1,
        "supervisors": [],
    }


async def test_dispatcher_status_reads_liveness_from_the_heartbeat_age(as_alice):
    now = utcnow()
    beat = dict(pid=1, host="h", version="0", started_at=now, interval_s=2.0, running=1, capacity=4)
    heartbeats.beat("fresh", now=now, **beat)
    heartbeats.beat("stale", now=now - timedelta(seconds=7), **beat)
    status = (await as_alice.get("/api/dispatcher/status")).json()
    assert_conforms(status, "DispatcherStatus")
    assert status["alive"] is True
    assert status["running"] == 1 and status["capacity"] == 4
    alive = {s["id"]: s["alive"] for s in status["supervisors"]}
    assert alive == {"fresh": True, "stale": False}


@pytest.mark.parametrize("path", ["/api/templates", "/api/dispatcher/status"])
async def test_both_need_a_login(anon, path):
    response = await anon.get(path)
    assert response.status_code == 401
