"""``/api/schedules`` over HTTP against a live server: checking every field
(hostile input included) with nothing written on failure, the preview, who
may do what to whose schedule, and what enable, disable, run-now, edit and
delete do to a schedule and its jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from crewboard import cron
from crewboard.board import db
from crewboard.board.models import Crew, Job, Schedule, ScheduleFire

ASK = {"templateId": "ask", "inputs": {"question": "What changed overnight?"}}


def body(**overrides: object) -> dict[str, object]:
    return {"name": "Morning digest", **ASK, "rule": "0 9 * * *", "timezone": "UTC", **overrides}


async def create(client: httpx.AsyncClient, **overrides: object) -> dict:
    response = await client.post("/api/schedules", json=body(**overrides))
    assert response.status_code == 201, response.text
    return response.json()


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def count(model) -> int:
    return await db.call(lambda: model.select().count())


# --- creating -----------------------------------------------------------------


async def test_create_returns_the_schedule_with_its_next_fire_in_its_zone(as_alice, alice):
    before = datetime.now(UTC)
    schedule = await create(as_alice, rule="30 9 * * MON-FRI", timezone="Europe/London")
    assert schedule["name"] == "Morning digest"
    assert schedule["templateId"] == "ask"
    assert schedule["inputs"] == {"question": "What changed overnight?"}
    assert schedule["rule"] == "30 9 * * mon-fri"
    assert schedule["timezone"] == "Europe/London"
    assert schedule["enabled"] is True
    assert schedule["overlap"] == "skip"
    assert schedule["lastRunAt"] is None
    assert schedule["owner"] == {"id": alice.id, "email": alice.email}
    assert schedule["createdAt"].endswith("Z") and schedule["updatedAt"].endswith("Z")
    next_run = parse(schedule["nextRunAt"])
    assert next_run == cron.next_fire("30 9 * * mon-fri", "Europe/London", before) or (
        next_run == cron.next_fire("30 9 * * mon-fri", "Europe/London", datetime.now(UTC))
    )
    local = next_run.astimezone(ZoneInfo("Europe/London"))
    assert (local.hour, local.minute, local.weekday() < 5) == (9, 30, True)


async def test_create_takes_macros_overlap_and_disabled(as_alice):
    schedule = await create(as_alice, rule="@Daily", overlap="allow", enabled=False)
    assert (schedule["rule"], schedule["overlap"], schedule["enabled"]) == (
        "@daily",
        "allow",
        False,
    )
    assert schedule["nextRunAt"] is None


BAD_FIELDS = [
    # rules: only 5-field Vixie cron and the five macros
    ({"rule": "* * * * * *"}, "rule"),
    ({"rule": "H * * * *"}, "rule"),
    ({"rule": "0 0 L * *"}, "rule"),
    ({"rule": "0 0 * * 1#2"}, "rule"),
    ({"rule": "@reboot"}, "rule"),
    ({"rule": "@midnight"}, "rule"),
    ({"rule": "61 * * * *"}, "rule"),
    ({"rule": "0 0 30 2 *"}, "rule"),
    ({"rule": "*/0 * * * *"}, "rule"),
    ({"rule": "0 0 * * *\n0 1 * * *"}, "rule"),
    ({"rule": "x" * 5000}, "rule"),
    ({"rule": ""}, "rule"),
    ({"rule": 5}, "rule"),
    ({"rule": ["0", "0", "*", "*", "*"]}, "rule"),
    # zones: real IANA names only
    ({"timezone": "../../etc/passwd"}, "timezone"),
    ({"timezone": "/etc/localtime"}, "timezone"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"timezone": "localtime"}, "timezone"),
    ({"timezone": "posixrules"}, "timezone"),
    ({"timezone": "Europe/London\x00"}, "timezone"),
    ({"timezone": ""}, "timezone"),
    ({"timezone": 1}, "timezone"),
    # the template and its inputs
    ({"templateId": "no-such-template"}, "templateId"),
    ({"templateId": "../../etc/passwd"}, "templateId"),
    ({"templateId": 7}, "templateId"),
    ({"inputs": {}}, "inputs.question"),
    ({"inputs": {"question": 42}}, "inputs.question"),
    ({"inputs": {"question": "ok", "bogus": 1}}, "inputs.bogus"),
    ({"inputs": {"question": "q" * 20001}}, "inputs.question"),
    ({"inputs": "question"}, "inputs"),
    ({"inputs": None}, "inputs"),
    # the rest
    ({"overlap": "sometimes"}, "overlap"),
    ({"enabled": "yes"}, "enabled"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "n" * 201}, "name"),
    ({"name": "bell\x07"}, "name"),
    ({"name": None}, "name"),
    ({"nextRunAt": "2030-01-01T00:00:00Z"}, "nextRunAt"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD_FIELDS)
async def test_create_refuses_a_bad_field_by_name_and_writes_nothing(as_alice, overrides, field):
    response = await as_alice.post("/api/schedules", json=body(**overrides))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert field in error["details"]["fields"], error
    assert await count(Schedule) == 0
    assert (await as_alice.get("/api/schedules")).json() == []


async def test_create_reports_every_bad_field_at_once(as_alice):
    response = await as_alice.post(
        "/api/schedules",
        json={
            "name": "",
            "templateId": "ask",
            "inputs": {"nope": 1},
            "rule": "@reboot",
            "timezone": "Mars/Olympus",
            "overlap": "x",
        },
    )
    assert response.status_code == 422
    fields = response.json()["error"]["details"]["fields"]
    assert {"name", "rule", "timezone", "overlap", "inputs.nope", "inputs.question"} <= set(fields)


async def test_create_needs_the_required_fields(as_alice):
    response = await as_alice.post("/api/schedules", json={})
    assert response.status_code == 422
    fields = response.json()["error"]["details"]["fields"]
    assert {"name", "templateId", "inputs", "rule", "timezone"} <= set(fields)


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"text"', b"{"])
async def test_create_refuses_a_body_that_is_not_a_json_object(as_alice, raw):
    response = await as_alice.post(
        "/api/schedules", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert await count(Schedule) == 0


# --- preview ------------------------------------------------------------------


async def test_preview_gives_local_and_utc_times(as_alice):
    response = await as_alice.get(
        "/api/schedules/preview",
        params={"rule": "30 2 * * *", "timezone": "America/New_York", "count": 3},
    )
    assert response.status_code == 200, response.text
    times = response.json()["times"]
    assert len(times) == 3
    now = datetime.now(UTC)
    for entry in times:
        assert entry["utc"].endswith("Z")
        local, utc = parse(entry["local"]), parse(entry["utc"])
        assert local == utc > now
        assert local.utcoffset() in (timedelta(hours=-5), timedelta(hours=-4))
        assert (local.hour, local.minute) in ((2, 30), (3, 30))
    assert [parse(t["utc"]) for t in times] == sorted(parse(t["utc"]) for t in times)


async def test_preview_clamps_count_to_100_and_defaults_sensibly(as_alice):
    many = await as_alice.get("/api/schedules/preview", params={"rule": "* * * * *", "count": 5000})
    assert many.status_code == 200 and len(many.json()["times"]) == 100
    huge = await as_alice.get(
        "/api/schedules/preview", params={"rule": "@hourly", "count": "9" * 5000}
    )
    assert huge.status_code == 200 and len(huge.json()["times"]) == 100
    default = await as_alice.get("/api/schedules/preview", params={"rule": "@hourly"})
    assert default.status_code == 200
    times = default.json()["times"]
    assert len(times) == 5
    assert all(t["local"].endswith("+00:00") for t in times)  # UTC unless told


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"rule": "* * * * * *"}, "rule"),
        ({"rule": "@reboot"}, "rule"),
        ({}, "rule"),
        ({"rule": "@daily", "timezone": "../../etc/passwd"}, "timezone"),
        ({"rule": "@daily", "timezone": "Mars/Olympus"}, "timezone"),
        ({"rule": "@daily", "count": "lots"}, "count"),
        ({"rule": "@daily", "count": "0"}, "count"),
        ({"rule": "@daily", "count": "-3"}, "count"),
    ],
)
async def test_preview_names_the_bad_parameter(as_alice, params, field):
    response = await as_alice.get("/api/schedules/preview", params=params)
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["details"]["fields"]


async def test_preview_reports_every_bad_parameter_at_once(as_alice):
    response = await as_alice.get(
        "/api/schedules/preview",
        params={"rule": "@reboot", "timezone": "Mars/Olympus", "count": "0"},
    )
    assert response.status_code == 422
    assert set(response.json()["error"]["details"]["fields"]) == {"rule", "timezone", "count"}


# --- who may do what ------------------------------------------------------------


ONE_SCHEDULE_ROUTES = [
    ("GET", "", 200),
    ("PATCH", "", 200),
    ("DELETE", "", 204),
    ("GET", "/jobs", 200),
    ("POST", "/enable", 200),
    ("POST", "/disable", 200),
    ("POST", "/run-now", 201),
]


def request_for(method: str, suffix: str, schedule_id: int) -> dict:
    kwargs: dict = {"method": method, "url": f"/api/schedules/{schedule_id}{suffix}"}
    if method == "PATCH":
        kwargs["json"] = {"name": "Renamed"}
    return kwargs


@pytest.mark.parametrize(("method", "suffix", "ok"), ONE_SCHEDULE_ROUTES)
async def test_one_schedule_routes_are_for_the_owner_and_admins(
    as_alice, as_bob, as_admin, anon, method, suffix, ok
):
    for who, expected in ((anon, 401), (as_bob, 404), (as_alice, ok)):
        schedule = await create(as_alice)
        response = await who.request(**request_for(method, suffix, schedule["id"]))
        assert response.status_code == expected, (who, response.text)
        if expected == 404:
            assert response.json()["error"]["code"] == "not_found"
            # Not a hint that it exists: the same answer as for no schedule at all.
            missing = await who.request(**request_for(method, suffix, 999999))
            assert (missing.status_code, missing.json()["error"]["message"]) == (
                404,
                response.json()["error"]["message"],
            )
    schedule = await create(as_alice)
    response = await as_admin.request(**request_for(method, suffix, schedule["id"]))
    assert response.status_code == ok, response.text


async def test_someone_elses_schedule_is_left_alone(as_alice, as_bob):
    schedule = await create(as_alice)
    for method, suffix, _ in ONE_SCHEDULE_ROUTES:
        await as_bob.request(**request_for(method, suffix, schedule["id"]))
    after = (await as_alice.get(f"/api/schedules/{schedule['id']}")).json()
    assert after == schedule
    assert await count(Crew) == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/schedules"), ("POST", "/api/schedules"), ("GET", "/api/schedules/preview")],
)
async def test_login_routes_refuse_anonymous_callers(anon, method, path):
    kwargs = {"json": body()} if method == "POST" else {"params": {"rule": "@daily"}}
    response = await anon.request(method, path, **kwargs)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_a_schedule_id_that_is_not_a_number_is_no_route(as_alice):
    for path in ("/api/schedules/abc", "/api/schedules/1e3/jobs", "/api/schedules/-1"):
        response = await as_alice.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


async def test_list_is_scoped_to_the_caller_and_admins_may_ask_for_mine(as_alice, as_bob, as_admin):
    mine = await create(as_alice, name="alice's")
    theirs = await create(as_bob, name="bob's")
    admins = await create(as_admin, name="admin's")

    async def names(client, **params) -> list[str]:
        response = await client.get("/api/schedules", params=params)
        assert response.status_code == 200, response.text
        return [s["name"] for s in response.json()]

    assert await names(as_alice) == [mine["name"]]
    assert await names(as_bob) == [theirs["name"]]
    assert await names(as_alice, mine="false") == [mine["name"]]
    assert await names(as_admin) == ["alice's", "bob's", "admin's"]
    assert await names(as_admin, mine="true") == [admins["name"]]
    assert await names(as_admin, mine="1") == [admins["name"]]
    bad = await as_admin.get("/api/schedules", params={"mine": "perhaps"})
    assert bad.status_code == 422 and "mine" in bad.json()["error"]["details"]["fields"]


# --- what each action does -------------------------------------------------------


async def test_disable_clears_the_next_fire_and_enable_recomputes_it_from_now(as_alice):
    schedule = await create(as_alice, rule="*/5 * * * *")
    disabled = (await as_alice.post(f"/api/schedules/{schedule['id']}/disable")).json()
    assert (disabled["enabled"], disabled["nextRunAt"]) == (False, None)
    again = await as_alice.post(f"/api/schedules/{schedule['id']}/disable")
    assert again.status_code == 200 and again.json()["nextRunAt"] is None

    before = datetime.now(UTC)
    enabled = (await as_alice.post(f"/api/schedules/{schedule['id']}/enable")).json()
    assert enabled["enabled"] is True
    next_run = parse(enabled["nextRunAt"])
    assert before < next_run <= before + timedelta(minutes=5, seconds=1)
    assert next_run.minute % 5 == 0 and next_run.second == 0
    twice = (await as_alice.post(f"/api/schedules/{schedule['id']}/enable")).json()
    assert twice["nextRunAt"] == enabled["nextRunAt"]


async def test_run_now_spawns_a_crew_linked_to_the_schedule_even_when_disabled(as_alice):
    schedule = await create(as_alice, rule="0 0 1 1 *")
    await as_alice.post(f"/api/schedules/{schedule['id']}/disable")
    response = await as_alice.post(f"/api/schedules/{schedule['id']}/run-now")
    assert response.status_code == 201, response.text
    spawned = response.json()
    assert spawned["crewId"] and len(spawned["jobIds"]) == 1

    crew = await db.call(Crew.get_by_id, spawned["crewId"])
    assert crew.schedule_id == schedule["id"] and crew.title == "Morning digest"
    jobs = (await as_alice.get(f"/api/schedules/{schedule['id']}/jobs")).json()
    assert [j["id"] for j in jobs["jobs"]] == spawned["jobIds"]
    assert jobs["jobs"][0]["scheduleId"] == schedule["id"]
    assert jobs["jobs"][0]["status"] == "ready"
    assert jobs["nextCursor"] is None

    after = (await as_alice.get(f"/api/schedules/{schedule['id']}")).json()
    assert (after["enabled"], after["nextRunAt"]) == (False, None)
    assert await count(ScheduleFire) == 0  # not a fire time of the rule


async def test_run_now_leaves_the_next_fire_where_it_was(as_alice):
    schedule = await create(as_alice, rule="0 0 1 1 *")
    for _ in range(2):
        assert (await as_alice.post(f"/api/schedules/{schedule['id']}/run-now")).status_code == 201
    after = (await as_alice.get(f"/api/schedules/{schedule['id']}")).json()
    assert after["nextRunAt"] == schedule["nextRunAt"]
    first = await as_alice.get(f"/api/schedules/{schedule['id']}/jobs", params={"limit": 1})
    page = first.json()
    assert len(page["jobs"]) == 1 and page["nextCursor"]
    second = await as_alice.get(
        f"/api/schedules/{schedule['id']}/jobs", params={"limit": 1, "cursor": page["nextCursor"]}
    )
    assert len(second.json()["jobs"]) == 1 and second.json()["nextCursor"] is None
    assert second.json()["jobs"][0]["id"] < page["jobs"][0]["id"]  # newest first
    bad = await as_alice.get(f"/api/schedules/{schedule['id']}/jobs", params={"cursor": "zzz"})
    assert bad.status_code == 422


async def test_run_now_when_the_inputs_no_longer_fit_is_422_and_spawns_nothing(as_alice):
    schedule = await create(as_alice)
    await db.call(
        lambda: Schedule.update(inputs={"gone": 1}).where(Schedule.id == schedule["id"]).execute()
    )
    response = await as_alice.post(f"/api/schedules/{schedule['id']}/run-now")
    assert response.status_code == 422
    assert "inputs.gone" in response.json()["error"]["details"]["fields"]
    assert await count(Crew) == 0


async def test_patch_recomputes_the_next_fire_for_a_new_rule_or_zone_only(as_alice):
    schedule = await create(as_alice, rule="0 9 * * *", timezone="UTC")
    renamed = (
        await as_alice.patch(f"/api/schedules/{schedule['id']}", json={"name": "  Renamed  "})
    ).json()
    assert renamed["name"] == "Renamed"
    assert renamed["nextRunAt"] == schedule["nextRunAt"]

    moved = await as_alice.patch(
        f"/api/schedules/{schedule['id']}",
        json={"rule": "0 9 * * *", "timezone": "Asia/Tokyo", "overlap": "allow"},
    )
    assert moved.status_code == 200, moved.text
    moved_body = moved.json()
    local = parse(moved_body["nextRunAt"]).astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.hour, local.minute) == (9, 0)
    assert moved_body["overlap"] == "allow" and moved_body["timezone"] == "Asia/Tokyo"
    assert parse(moved_body["updatedAt"]) >= parse(schedule["updatedAt"])

    inputs = await as_alice.patch(
        f"/api/schedules/{schedule['id']}", json={"inputs": {"question": "New question?"}}
    )
    assert inputs.json()["inputs"] == {"question": "New question?"}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"rule": "* * * * * *"}, "rule"),
        ({"rule": "@reboot"}, "rule"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "localtime"}, "timezone"),
        ({"inputs": {}}, "inputs.question"),
        ({"inputs": {"question": "ok", "extra": True}}, "inputs.extra"),
        ({"overlap": "never"}, "overlap"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"rule": None}, "rule"),
        ({"templateId": "research-brief"}, "templateId"),  # not editable
        ({"enabled": False}, "enabled"),  # use /enable and /disable
    ],
)
async def test_patch_refuses_bad_fields_and_changes_nothing(as_alice, patch, field):
    schedule = await create(as_alice)
    response = await as_alice.patch(
        f"/api/schedules/{schedule['id']}", json={"name": "Would be renamed", **patch}
    )
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["details"]["fields"]
    assert (await as_alice.get(f"/api/schedules/{schedule['id']}")).json() == schedule


async def test_delete_keeps_the_jobs_the_schedule_spawned(as_alice):
    schedule = await create(as_alice)
    spawned = (await as_alice.post(f"/api/schedules/{schedule['id']}/run-now")).json()
    response = await as_alice.delete(f"/api/schedules/{schedule['id']}")
    assert response.status_code == 204
    assert (await as_alice.get(f"/api/schedules/{schedule['id']}")).status_code == 404
    assert (await as_alice.delete(f"/api/schedules/{schedule['id']}")).status_code == 404
    job = await db.call(Job.get_by_id, spawned["jobIds"][0])
    crew = await db.call(Crew.get_by_id, spawned["crewId"])
    assert job.schedule_id is None and crew.schedule_id is None
    assert await count(Schedule) == 0
