"""The board's search, its real column totals, restoring archived jobs and
the page a browser gets for an address that is no page, through a live
server."""

from __future__ import annotations

import httpx
import pytest

from crewboard.board.models import JobStatus
from tests.support.board_jobs import job_row, set_job


async def ask(client: httpx.AsyncClient, question: str, title: str | None = None) -> int:
    body: dict = {"templateId": "ask", "inputs": {"question": question}}
    if title:
        body["title"] = title
    response = await client.post("/api/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()["jobIds"][0]


async def listed(client: httpx.AsyncClient, **params: str) -> list[int]:
    response = await client.get("/api/jobs", params=params)
    assert response.status_code == 200, response.text
    return [j["id"] for j in response.json()["jobs"]]


async def counts(client: httpx.AsyncClient, **params: str) -> dict[str, int]:
    response = await client.get("/api/jobs/counts", params=params)
    assert response.status_code == 200, response.text
    return response.json()["counts"]


async def test_search_filters_by_title_template_and_owner(as_alice, as_bob, as_admin):
    owls = await ask(as_alice, "Where do owls sleep?")
    percent = await ask(as_alice, "Is 100% of it done_yet?")
    bobs = await ask(as_bob, "Owls or larks?")
    assert await listed(as_alice, q="OWLS") == [owls], "only her own, any case"
    assert await listed(as_admin, q="owls") == [bobs, owls]
    assert await listed(as_admin, q="bob@example") == [bobs], "by the owner's email"
    assert await listed(as_alice, q="ask") == [percent, owls], "by the template id"
    assert await listed(as_alice, q="100%") == [percent], "% is a plain character"
    assert await listed(as_alice, q="_") == [percent], "so is _"
    assert await listed(as_alice, q="%") == [percent]
    assert await listed(as_alice, q="   ") == [percent, owls], "blank is no search"
    assert await listed(as_alice, q="nothing like it") == []


@pytest.mark.parametrize("q", ["x" * 201, "a\x00b", "tab\there"])
async def test_an_unreadable_search_is_422_on_q(as_alice, q):
    for path in ("/api/jobs", "/api/jobs/counts"):
        response = await as_alice.get(path, params={"q": q})
        assert response.status_code == 422, response.text
        assert "q" in response.json()["error"]["details"]["fields"]


async def test_counts_are_the_real_totals_of_each_column(as_alice, as_bob, as_admin):
    mine = [await ask(as_alice, f"question {n}") for n in range(25)]
    await ask(as_bob, "bob's")
    set_job(mine[0], status=JobStatus.DONE)
    set_job(mine[1], status=JobStatus.BLOCKED)
    assert (await as_alice.post(f"/api/jobs/{mine[2]}/archive")).status_code == 200
    assert await counts(as_alice) == {
        "waiting": 0,
        "ready": 22,
        "running": 0,
        "blocked": 1,
        "done": 1,
        "archived": 1,
    }
    assert (await counts(as_admin))["ready"] == 23
    assert (await counts(as_admin, mine="1"))["ready"] == 0
    assert (await counts(as_alice, q="question 1"))["ready"] == 10  # 10..19 (1 is blocked)
    assert (await counts(as_admin, q="bob@"))["ready"] == 1


async def test_an_archived_job_is_restored_to_the_status_it_had(as_alice, as_bob):
    job_id = await ask(as_alice, "keep me")
    set_job(job_id, status=JobStatus.BLOCKED, blocked_reason="needs a key")
    archived = (await as_alice.post(f"/api/jobs/{job_id}/archive")).json()
    assert archived["status"] == "archived" and "unarchive" in archived["actions"]
    assert (await as_bob.post(f"/api/jobs/{job_id}/unarchive")).status_code == 404
    restored = await as_alice.post(f"/api/jobs/{job_id}/unarchive")
    assert restored.status_code == 200, restored.text
    assert restored.json()["status"] == "blocked"
    assert "unarchive" not in restored.json()["actions"]
    assert job_row(job_id).status == JobStatus.BLOCKED
    again = await as_alice.post(f"/api/jobs/{job_id}/unarchive")
    assert again.status_code == 409 and "only an archived job" in again.json()["error"]["message"]
    assert (await as_alice.post("/api/jobs/999999/unarchive")).status_code == 404
    detail = (await as_alice.get(f"/api/jobs/{job_id}")).json()
    assert "unarchive" in [e["kind"] for e in detail["events"]]


async def test_a_refused_delete_names_the_job_that_depends_on_it(as_alice):
    response = await as_alice.post(
        "/api/jobs", json={"templateId": "research-brief", "inputs": {"topic": "owls"}}
    )
    assert response.status_code == 201, response.text
    first = response.json()["jobIds"][0]
    refused = await as_alice.delete(f"/api/jobs/{first}")
    assert refused.status_code == 409
    assert refused.json()["error"]["details"]["dependent"] in response.json()["jobIds"]


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize("path", ["/nope", "/jobs/abc", "/board/extra"])
async def test_a_browser_gets_a_page_with_a_way_back_and_api_clients_json(as_alice, path):
    page = await as_alice.get(path, headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Page not found" in page.text and 'href="/board"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for accept in ("*/*", "application/json"):
        raw = await as_alice.get(path, headers={"Accept": accept})
        assert raw.status_code == 404
        assert raw.json()["error"]["code"] == "not_found"
    api = await as_alice.get("/api/nope", headers={"Accept": BROWSER_ACCEPT})
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
