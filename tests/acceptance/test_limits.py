"""Per-user limits, disabled accounts and token edges, through `crewboard serve`
(web and supervisor as real processes) on small configured limits: parallel
requests at a count limit, chat turns at once and past their time limit, an
administrator disabling and enabling an account, and the headers of tokens,
the profile and the API viewer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import Account, add_user, client_for, make_config, signed_in
from tests.support import engine
from tests.support.procs import Proc, run_cli, serve, served_url
from tests.support.sse_client import collect

LIMITS = {
    "CREWBOARD_SCHEDULES_PER_USER": "3",
    "CREWBOARD_QUEUED_JOBS_PER_USER": "4",
    "CREWBOARD_SESSIONS_PER_USER": "3",
    "CREWBOARD_CHAT_TURNS_PER_USER": "2",
    "CREWBOARD_CHAT_TURN_TIMEOUT_S": "3",
}
PARALLEL = 12
ASK = {"templateId": "ask", "inputs": {"question": "What changed overnight?"}}
LATER = (datetime.now(UTC) + timedelta(days=30)).isoformat()


@dataclass
class Site:
    url: str
    home: Path
    proc: Proc
    admin: Account
    users: list[Account]

    def user(self) -> Account:
        return self.users.pop(0)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with engine.shared_board():
        yield from _site(tmp_path_factory.mktemp("limits") / "home")


def _site(home: Path) -> Iterator[Site]:
    from crewboard.board import db
    from crewboard.bootstrap import open_home

    config = make_config(home)
    open_home(config)
    try:
        admin = add_user(config, "admin@example.test", admin=True)
        users = [add_user(config, f"user{n}@example.test") for n in range(1, 12)]
    finally:
        db.close()
    with serve(home, LIMITS) as proc:
        yield Site(served_url(proc).rstrip("/"), home, proc, admin, users)
        proc.stop()


async def in_parallel(count: int, send) -> list[httpx.Response]:
    """``send(n)`` for n in range(count), all at once; the responses in order."""
    responses: list[httpx.Response | None] = [None] * count

    async def one(n: int) -> None:
        responses[n] = await send(n)

    async with trio.open_nursery() as nursery:
        for n in range(count):
            nursery.start_soon(one, n)
    return [r for r in responses if r is not None]


def assert_limit_refusals(responses: list[httpx.Response], limit: str, maximum: int) -> None:
    created = [r for r in responses if r.status_code in (200, 201)]
    refused = [r for r in responses if r.status_code == 409]
    assert len(created) + len(refused) == len(responses), [r.text for r in responses]
    for response in refused:
        error = response.json()["error"]
        assert error["code"] == "limit_reached"
        assert error["details"]["limit"] == limit and error["details"]["max"] == maximum
        assert str(maximum) in error["message"]


async def usage_of(site: Site, account: Account) -> dict:
    async with signed_in(site.url, site.admin) as admin:
        response = await admin.get("/api/admin/usage")
    assert response.status_code == 200, response.text
    return next(u for u in response.json()["users"] if u["id"] == account.id)


# --- counts -------------------------------------------------------------------


async def test_parallel_schedules_stop_exactly_at_the_limit(site):
    alice = site.user()
    async with signed_in(site.url, alice) as client:
        body = {**ASK, "rule": "0 9 * * *", "timezone": "UTC"}
        responses = await in_parallel(
            PARALLEL, lambda n: client.post("/api/schedules", json={**body, "name": f"s{n}"})
        )
        assert_limit_refusals(responses, "schedules", 3)
        assert sum(r.status_code == 201 for r in responses) == 3
        assert len((await client.get("/api/schedules")).json()) == 3
    assert (await usage_of(site, alice))["usage"]["schedules"] == 3


async def test_parallel_crews_stop_at_the_queued_jobs_limit(site):
    bob = site.user()
    async with signed_in(site.url, bob) as client:
        responses = await in_parallel(
            PARALLEL,
            lambda n: client.post("/api/jobs", params={"scheduledAt": LATER}, json=ASK),
        )
        assert_limit_refusals(responses, "queuedJobs", 4)
        assert sum(r.status_code == 201 for r in responses) == 4
        listed = (await client.get("/api/jobs", params={"status": "waiting"})).json()["jobs"]
        assert len(listed) == 4
        # Cancelling frees a place; unblocking the cancelled job once it is
        # taken again would go past the limit, so it is refused too.
        cancelled = listed[0]["id"]
        assert (await client.post(f"/api/jobs/{cancelled}/cancel")).status_code == 200
        again = await client.post("/api/jobs", params={"scheduledAt": LATER}, json=ASK)
        assert again.status_code == 201, again.text
        refused = await client.post(f"/api/jobs/{cancelled}/unblock")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["details"]["limit"] == "queuedJobs"
    assert (await usage_of(site, bob))["usage"]["queuedJobs"] == 4


async def test_parallel_sessions_stop_at_the_limit_but_reopening_one_is_fine(site):
    carol = site.user()
    async with signed_in(site.url, carol) as client:
        responses = await in_parallel(
            PARALLEL,
            lambda n: client.post(
                "/api/session/create", json={"agent": "assistant", "sessionName": f"talk {n}"}
            ),
        )
        assert_limit_refusals(responses, "sessions", 3)
        made = [r.json()["sessionName"] for r in responses if r.status_code == 201]
        assert len(made) == 3
        assert len((await client.get("/api/session/names")).json()) == 3
        again = await client.post(
            "/api/session/create", json={"agent": "assistant", "sessionName": made[0]}
        )
        assert again.status_code == 200, again.text


# --- chat turns ---------------------------------------------------------------


async def _open_turn(client: httpx.AsyncClient, session_id: int, message: str):
    request = client.build_request(
        "POST", f"/api/session/newUserMessage/{session_id}", json={"message": message}
    )
    return await client.send(request, stream=True)


async def test_chat_turns_at_once_are_limited_and_a_long_turn_ends_at_its_time_limit(site):
    dave = site.user()
    async with signed_in(site.url, dave) as client:
        ids = []
        for n in range(3):
            made = await client.post(
                "/api/session/create", json={"agent": "assistant", "sessionName": f"chat {n}"}
            )
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
        first = await _open_turn(client, ids[0], "/sleep 60\nTake your time.")
        second = await _open_turn(client, ids[1], "/sleep 60\nYou too.")
        try:
            assert first.status_code == second.status_code == 200
            third = await client.post(
                f"/api/session/newUserMessage/{ids[2]}", json={"message": "And me?"}
            )
            assert third.status_code == 429, third.text
            assert int(third.headers["Retry-After"]) >= 1
            error = third.json()["error"]
            assert error["code"] == "too_many_requests"
            assert error["details"]["limit"] == "chatTurns" and error["details"]["max"] == 2
            frames = await collect(first, until="error", timeout_s=60)
        finally:
            await first.aclose()
            await second.aclose()
    assert frames[-1].type == "error", frames
    message = frames[-1].data["message"]
    assert "time limit" in message and "CREWBOARD_CHAT_TURN_TIMEOUT_S" in message
    site.proc.wait_for_line(lambda line: "ran past the chat turn time limit" in line)
    async with signed_in(site.url, dave) as client:
        # Both turns ended at their limit, so the third session takes a turn now.
        replayed = await client.get("/api/session/replay/chat 0")
        assert "time limit" in replayed.text
        turn = await _open_turn(client, ids[2], "And me?")
        try:
            assert turn.status_code == 200
            assert (await collect(turn, until="done", timeout_s=60))[-1].type == "done"
        finally:
            await turn.aclose()


# --- disabled accounts --------------------------------------------------------


async def test_disabling_blocks_the_queue_and_pauses_schedules_until_the_user_resumes(site):
    erin = site.user()
    async with signed_in(site.url, erin) as client:
        crew = await client.post("/api/jobs", params={"scheduledAt": LATER}, json=ASK)
        assert crew.status_code == 201, crew.text
        job_id = crew.json()["jobIds"][0]
        schedule = await client.post(
            "/api/schedules", json={**ASK, "name": "daily", "rule": "0 9 * * *", "timezone": "UTC"}
        )
        schedule_id = schedule.json()["id"]
        async with signed_in(site.url, site.admin) as admin:
            mine = await admin.post(f"/api/admin/users/{site.admin.id}/disable")
            assert mine.status_code == 409, mine.text
            gone = await admin.post("/api/admin/users/999999/disable")
            assert gone.status_code == 404, gone.text
            done = await admin.post(f"/api/admin/users/{erin.id}/disable")
            assert done.status_code == 200, done.text
            assert done.json()["blockedJobIds"] == [job_id]
            assert done.json()["pausedScheduleIds"] == [schedule_id]
            assert done.json()["user"]["disabled"] is True
            detail = (await admin.get(f"/api/jobs/{job_id}")).json()
            job = detail["job"]
            assert job["status"] == "blocked" and job["blockedReason"] == "owner disabled"
            blocked = [e for e in detail["events"] if e["kind"] == "blocked"]
            assert [e["message"] for e in blocked] == ["owner disabled"]
            paused = (await admin.get(f"/api/schedules/{schedule_id}")).json()
            assert paused["enabled"] is False and paused["nextRunAt"] is None
            # Signed out in effect: the session cookie no longer signs anyone in.
            assert (await client.get("/api/jobs")).status_code == 401
            enabled = await admin.post(f"/api/admin/users/{erin.id}/enable")
            assert enabled.status_code == 200 and enabled.json()["user"]["disabled"] is False
    async with signed_in(site.url, erin) as client:
        job = (await client.get(f"/api/jobs/{job_id}")).json()["job"]
        assert job["status"] == "blocked", "enabling leaves the queue for the user to resume"
        unblocked = await client.post(f"/api/jobs/{job_id}/unblock")
        assert unblocked.status_code == 200, unblocked.text
        resumed = await client.post(f"/api/schedules/{schedule_id}/enable")
        assert resumed.json()["enabled"] is True


async def test_the_command_line_disables_and_enables_an_account_the_same_way(site):
    heidi = site.user()
    async with signed_in(site.url, heidi) as client:
        crew = await client.post("/api/jobs", params={"scheduledAt": LATER}, json=ASK)
        job_id = crew.json()["jobIds"][0]
    removed = run_cli("user", "remove", heidi.email, home=site.home)
    assert removed.returncode == 0, removed.stderr
    async with signed_in(site.url, site.admin) as admin:
        job = (await admin.get(f"/api/jobs/{job_id}")).json()["job"]
        assert (job["status"], job["blockedReason"]) == ("blocked", "owner disabled")
        assert (await usage_of(site, heidi))["disabled"] is True
    enabled = run_cli("user", "enable", heidi.email, home=site.home)
    assert enabled.returncode == 0, enabled.stderr
    assert (await usage_of(site, heidi))["disabled"] is False
    async with signed_in(site.url, heidi) as client:
        assert (await client.get(f"/api/jobs/{job_id}")).json()["job"]["status"] == "blocked"


async def test_admin_routes_are_for_admins_only(site):
    frank = site.user()
    async with signed_in(site.url, frank) as client:
        assert (await client.get("/api/admin/usage")).status_code == 403
        assert (await client.post(f"/api/admin/users/{frank.id}/disable")).status_code == 403
    async with client_for(site.url) as anon:
        assert (await anon.get("/api/admin/usage")).status_code == 401
    async with signed_in(site.url, site.admin) as admin:
        usage = (await admin.get("/api/admin/usage")).json()
    assert usage["limits"] == {
        "chatTurns": 2,
        "chatTurnSeconds": 3.0,
        "schedules": 3,
        "queuedJobs": 4,
        "sessions": 3,
    }
    row = next(u for u in usage["users"] if u["id"] == frank.id)
    assert row["usage"] == {"chatTurns": 0, "schedules": 0, "queuedJobs": 0, "sessions": 0}


# --- tokens and headers -------------------------------------------------------


async def test_tokens_can_expire_and_secrets_and_profiles_are_not_cached(site):
    grace = site.user()
    async with signed_in(site.url, grace) as client:
        me = await client.get("/auth/me")
        assert me.headers["Cache-Control"] == "no-store"
        for bad in (0, 3651, "30", True, 1.5):
            refused = await client.post("/api/tokens", json={"name": "x", "expiresInDays": bad})
            assert refused.status_code == 422, (bad, refused.text)
            assert "expiresInDays" in refused.json()["error"]["details"]["fields"]
        made = await client.post("/api/tokens", json={"name": "ci", "expiresInDays": 30})
        assert made.status_code == 201, made.text
        assert made.headers["Cache-Control"] == "no-store"
        expires = datetime.fromisoformat(made.json()["expiresAt"].replace("Z", "+00:00"))
        assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
        forever = await client.post("/api/tokens", json={"name": "forever"})
        assert forever.json()["expiresAt"] is None
        secret = made.json()["token"]
    async with client_for(site.url, headers={"Authorization": f"Bearer {secret}"}) as bearer:
        assert (await bearer.get("/auth/me")).json()["id"] == grace.id
        listed = (await bearer.get("/api/tokens")).json()
    entry = next(t for t in listed if t["name"] == "ci")
    assert entry["expiresAt"] == made.json()["expiresAt"] and entry["lastUsedAt"] is not None


async def test_the_api_viewer_has_a_content_security_policy(site):
    async with client_for(site.url) as anon:
        page = await anon.get("/openapi/")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "<script>" not in page.text
