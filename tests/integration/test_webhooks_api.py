"""Webhooks through a live server: naming a URL on ``POST /api/jobs``, on a
schedule and in a template; hostile URLs refused with the field named and
nothing written; and each user's signing secret, which no one else can read
or change."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from crewboard.board import db
from crewboard.board.models import Crew, Job, Schedule, WebhookSecret
from tests.conftest import make_config
from tests.support.board_jobs import write_templates

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board

ASK = {"templateId": "ask", "inputs": {"question": "Why?"}}
ALLOWED = "http://127.0.0.9:9/hooks"
HOSTILE = [
    ("http://localhost:8000/admin", "loopback"),
    ("http://127.0.0.2/", "loopback"),
    ("http://[::1]:80/", "loopback"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://10.0.0.1/hook", "private"),
    ("http://192.168.0.10/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://100.64.0.1/", "CGNAT"),
    ("http://0.0.0.0:9/", "unspecified"),
    ("file:///etc/passwd", "http or https"),
    ("ftp://example.com/x", "http or https"),
    ("gopher://example.com/", "http or https"),
    ("//example.com/x", "http or https"),
    ("https://user:secret@example.com/", "user name or password"),
    ("https://example.com/" + "x" * 5000, "at most 2048"),
    ("https://exa mple.com/", "spaces"),
    ("https://example.com/\u202e", "ASCII"),
    ("", "empty"),
    (12, "string"),
    ({"url": "https://example.com"}, "string"),
]


@pytest.fixture
def config(tmp_path: Path):
    folder = write_templates(tmp_path / "workflows")
    (folder / "hooked.job_workflow.yaml").write_text(
        f"name: Hooked\nwebhook: {ALLOWED}/template\njobs:\n  only:\n    prompt: Hello.\n"
    )
    (folder / "badhook.job_workflow.yaml").write_text(
        "name: Bad hook\nwebhook: file:///etc/passwd\njobs:\n  only:\n    prompt: Hello.\n"
    )
    return make_config(
        tmp_path / "home",
        workflows=(folder,),
        # This one loopback address only; everything else internal stays refused.
        webhook_allow=("127.0.0.9",),
    )


async def crew_url(crew_id: int) -> str | None:
    return await db.call(lambda: Crew.get_by_id(crew_id).webhook_url)


async def test_a_request_names_the_url_its_crew_posts_to(as_alice: httpx.AsyncClient) -> None:
    response = await as_alice.post("/api/jobs", json={**ASK, "webhookUrl": f" {ALLOWED} "})
    assert response.status_code == 201, response.text
    assert await crew_url(response.json()["crewId"]) == ALLOWED
    plain = await as_alice.post("/api/jobs", json=ASK)
    assert await crew_url(plain.json()["crewId"]) is None


async def test_a_template_names_a_url_a_request_may_override(as_alice: httpx.AsyncClient) -> None:
    from_template = await as_alice.post("/api/jobs", json={"templateId": "hooked", "inputs": {}})
    assert from_template.status_code == 201, from_template.text
    assert await crew_url(from_template.json()["crewId"]) == f"{ALLOWED}/template"
    overridden = await as_alice.post(
        "/api/jobs", json={"templateId": "hooked", "inputs": {}, "webhookUrl": ALLOWED}
    )
    assert await crew_url(overridden.json()["crewId"]) == ALLOWED
    templates = {t["id"]: t for t in (await as_alice.get("/api/templates")).json()}
    assert not templates["badhook"]["valid"]
    assert "webhook" in templates["badhook"]["error"]


async def test_hostile_urls_are_refused_on_the_field_and_nothing_is_written(
    as_alice: httpx.AsyncClient,
) -> None:
    for url, why in HOSTILE:
        response = await as_alice.post("/api/jobs", json={**ASK, "webhookUrl": url})
        assert response.status_code == 422, (url, response.text)
        assert why in response.json()["error"]["details"]["fields"]["webhookUrl"], url
        schedule = {"name": "n", **ASK, "rule": "@daily", "timezone": "UTC", "webhookUrl": url}
        response = await as_alice.post("/api/schedules", json=schedule)
        assert response.status_code == 422, (url, response.text)
        assert why in response.json()["error"]["details"]["fields"]["webhookUrl"], url
    assert await db.call(lambda: Job.select().count()) == 0
    assert await db.call(lambda: Schedule.select().count()) == 0


async def test_a_schedule_keeps_a_url_changes_it_and_drops_it(as_alice: httpx.AsyncClient) -> None:
    body = {"name": "n", **ASK, "rule": "@daily", "timezone": "UTC", "webhookUrl": ALLOWED}
    created = await as_alice.post("/api/schedules", json=body)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["webhookUrl"] == ALLOWED
    path = f"/api/schedules/{schedule['id']}"
    refused = await as_alice.patch(path, json={"webhookUrl": "http://10.0.0.1/"})
    assert refused.status_code == 422
    assert (await as_alice.get(path)).json()["webhookUrl"] == ALLOWED
    changed = await as_alice.patch(path, json={"webhookUrl": ALLOWED + "/2"})
    assert changed.json()["webhookUrl"] == ALLOWED + "/2"
    run = await as_alice.post(f"{path}/run-now")
    assert run.status_code == 201, run.text
    assert await crew_url(run.json()["crewId"]) == ALLOWED + "/2"
    dropped = await as_alice.patch(path, json={"webhookUrl": ""})
    assert dropped.json()["webhookUrl"] is None


async def test_each_user_has_their_own_secret_that_only_they_see_and_rotate(
    as_alice: httpx.AsyncClient, as_bob: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    alices = (await as_alice.get("/api/webhooks/secret")).json()
    assert alices["secret"].startswith("whsec_")
    assert (await as_alice.get("/api/webhooks/secret")).json() == alices
    bobs = (await as_bob.get("/api/webhooks/secret")).json()
    assert bobs["secret"] != alices["secret"]
    # Bob's rotation changes his secret and only his.
    rotated = await as_bob.post("/api/webhooks/secret/rotate")
    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in (bobs["secret"], alices["secret"])
    assert (await as_alice.get("/api/webhooks/secret")).json() == alices
    assert (await as_bob.get("/api/webhooks/secret")).json() == rotated.json()
    # No route names another user's secret; strangers get nothing.
    for path in ("/api/webhooks/secret/2", "/api/webhooks/2/secret", "/api/webhooks"):
        assert (await as_bob.get(path)).status_code == 404
    assert (await anon.get("/api/webhooks/secret")).status_code == 401
    assert (await anon.post("/api/webhooks/secret/rotate")).status_code in (401, 403)
    assert await db.call(lambda: WebhookSecret.select().count()) == 2
