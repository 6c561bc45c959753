"""The board's change feed (``GET /api/board/events``) through a live server:
scoped like the job list, each event with its job as it is now, resumable
with ``Last-Event-ID`` without gaps or repeats."""

from __future__ import annotations

import json

import pytest

from crewboard.web import sse
from tests.conftest import make_config
from tests.support import crews
from tests.support.board_jobs import assert_conforms, write_templates
from tests.support.crews import JobDef
from tests.support.sse_client import RawStream, open_raw_stream

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board

FEED = "/api/board/events"


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path / "home", workflows=(write_templates(tmp_path / "workflows"),))


async def ask(client, question: str = "Why?") -> int:
    response = await client.post(
        "/api/jobs", json={"templateId": "ask", "inputs": {"question": question}}
    )
    assert response.status_code == 201, response.text
    return response.json()["jobIds"][0]


async def until_settled(stream: RawStream, count: int) -> list:
    frames = await stream.take(count)
    assert len(frames) == count, frames
    return frames


async def test_the_feed_sends_new_events_with_their_job(server, as_alice):
    async with open_raw_stream(server, FEED, client=as_alice) as stream:
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        job_id = await ask(as_alice)
        await as_alice.post(f"/api/jobs/{job_id}/comments", json={"text": "hi"})
        created, comment = await until_settled(stream, 2)
    assert created.type == comment.type == "event"
    assert int(created.id) == created.data["position"] and int(comment.id) > int(created.id)
    assert created.data["kind"] == "created" and created.data["jobId"] == job_id
    assert created.data["job"]["id"] == job_id and created.data["job"]["status"] == "ready"
    assert comment.data["kind"] == "comment"
    for frame in (created, comment):
        assert_conforms({"type": frame.type, "data": frame.data}, "BoardEventFrame")


async def test_the_feed_carries_job_summaries_not_their_long_texts(server, as_admin):
    prompt, result = "Describe the owl. " * 4_500, "The owl hoots. " * 5_400
    jobs = {f"j{n}": JobDef(prompt=prompt, extra={"result": result}) for n in range(10)}
    ids = list(crews.add_crew(jobs).values())
    async with open_raw_stream(server, FEED, client=as_admin) as stream:
        for job_id in ids:
            assert (await as_admin.post(f"/api/jobs/{job_id}/archive")).status_code == 200
        frames = await until_settled(stream, len(ids))
    assert [f.data["jobId"] for f in frames] == ids
    for frame in frames:
        job = frame.data["job"]
        assert len(json.dumps(frame.data)) < 5_000
        assert "prompt" not in job and "result" not in job
        assert job["promptPreview"] == prompt[:300] and job["promptChars"] == len(prompt)
        assert job["resultPreview"] == result[:300] and job["resultChars"] == len(result)
        assert_conforms({"type": frame.type, "data": frame.data}, "BoardEventFrame")


async def test_nothing_from_before_the_feed_opened_without_last_event_id(
    server, as_alice, monkeypatch
):
    monkeypatch.setattr(sse, "PING_S", 0.2)
    await ask(as_alice, "old")
    async with open_raw_stream(server, FEED, client=as_alice) as stream:
        # A ping: the feed is following, and has sent nothing of the old job.
        assert await stream.frames_until_pings(1) == []
        new = await ask(as_alice, "new")
        # The next frame is the new job's: the old one's would have come first.
        (frame,) = await until_settled(stream, 1)
    assert frame.data["jobId"] == new


async def test_others_never_see_your_events(server, as_alice, as_bob, as_admin):
    async with (
        open_raw_stream(server, FEED, client=as_bob) as bobs,
        open_raw_stream(server, FEED, client=as_admin) as admins,
        open_raw_stream(server, FEED + "?mine=true", client=as_admin) as admins_own,
    ):
        alices = await ask(as_alice)
        await as_alice.post(f"/api/jobs/{alices}/cancel")
        bob_job = await ask(as_bob)
        admin_job = await ask(as_admin)
        bob_again = await ask(as_bob)
        bob_sees = await until_settled(bobs, 2)
        everything = await until_settled(admins, 5)
        (own,) = await until_settled(admins_own, 1)
    # Bob's two jobs came one after the other: nothing of Alice's before
    # them, nothing of the admin's between them.
    assert [f.data["jobId"] for f in bob_sees] == [bob_job, bob_again]
    assert [f.data["jobId"] for f in everything] == [alices, alices, bob_job, admin_job, bob_again]
    assert own.data["jobId"] == admin_job


async def test_last_event_id_resumes_without_gaps_or_repeats(server, as_alice):
    async with open_raw_stream(server, FEED, client=as_alice) as stream:
        first = await ask(as_alice, "one")
        (seen,) = await until_settled(stream, 1)
    missed = [await ask(as_alice, f"while away {n}") for n in range(3)]
    async with open_raw_stream(server, FEED, client=as_alice, Last_Event_ID=seen.id) as stream:
        later = await ask(as_alice, "after")
        marker = await ask(as_alice, "marker")
        # Up to a marker made last: any repeat would have come before it.
        frames = await until_settled(stream, 5)
    assert seen.data["jobId"] == first
    assert [f.data["jobId"] for f in frames] == [*missed, later, marker]
    ids = [int(f.id) for f in frames]
    assert ids == sorted(set(ids)) and ids[0] > int(seen.id)


async def test_resuming_from_zero_replays_the_callers_history(server, as_alice, as_bob):
    own = [await ask(as_alice, f"q{n}") for n in range(3)]
    await ask(as_bob)
    async with open_raw_stream(server, FEED, client=as_alice, Last_Event_ID="0") as stream:
        frames = await until_settled(stream, 3)
        marker = await ask(as_alice, "marker")
        # The next frame is the marker's: nothing else of the history, nor Bob's.
        (next_frame,) = await until_settled(stream, 1)
    assert [f.data["jobId"] for f in frames] == own
    assert next_frame.data["jobId"] == marker


async def test_a_deleted_job_is_announced_without_its_job(server, as_alice):
    job_id = await ask(as_alice)
    async with open_raw_stream(server, FEED, client=as_alice) as stream:
        assert (await as_alice.delete(f"/api/jobs/{job_id}")).status_code == 204
        (deleted,) = await until_settled(stream, 1)
    assert deleted.data["kind"] == "deleted"
    assert deleted.data["job"] is None and deleted.data["data"]["jobIds"] == [job_id]
    assert_conforms({"type": deleted.type, "data": deleted.data}, "BoardEventFrame")


async def test_events_after_a_delete_are_not_missed(server, as_alice):
    """Deleting the newest job removes the newest events; ids must not be
    handed out again, or a feed resuming after them would skip new ones."""
    async with open_raw_stream(server, FEED, client=as_alice) as stream:
        job_id = await ask(as_alice)
        await as_alice.post(f"/api/jobs/{job_id}/comments", json={"text": "x"})
        _, comment = await until_settled(stream, 2)
    await as_alice.delete(f"/api/jobs/{job_id}")
    after = await ask(as_alice)
    async with open_raw_stream(server, FEED, client=as_alice, Last_Event_ID=comment.id) as stream:
        deleted, new = await until_settled(stream, 2)
    assert deleted.data["kind"] == "deleted"
    assert new.data["jobId"] == after and int(new.id) > int(comment.id)


async def test_feeds_opened_after_a_quiet_spell_start_from_now_or_resume(
    server, as_alice, monkeypatch
):
    monkeypatch.setattr(sse, "PING_S", 0.3)
    async with open_raw_stream(server, FEED, client=as_alice) as stream:
        await ask(as_alice, "first")
        (seen,) = await until_settled(stream, 1)
    # With no feed open the board is not polled, so what happens now is only
    # found by a feed that asks for it: a fresh one starts from now.
    missed = await ask(as_alice, "while no feed was open")
    async with (
        open_raw_stream(server, FEED, client=as_alice) as fresh,
        open_raw_stream(server, FEED, client=as_alice, Last_Event_ID=seen.id) as resumed,
    ):
        later = await ask(as_alice, "after")
        (new,) = await until_settled(fresh, 1)
        caught_up = await until_settled(resumed, 2)
        assert await fresh.frames_until_pings(2) == []
    assert new.data["jobId"] == later
    assert [f.data["jobId"] for f in caught_up] == [missed, later]


async def test_an_idle_feed_is_pinged(server, as_alice, monkeypatch):
    monkeypatch.setattr(sse, "PING_S", 0.3)
    async with open_raw_stream(server, FEED, client=as_alice) as stream:
        assert await stream.frames_until_pings(2) == []
    assert set(stream.pings) == {": ping"}


async def test_many_feeds_share_one_poller(server, as_alice, as_bob):
    async with (
        open_raw_stream(server, FEED, client=as_alice) as one,
        open_raw_stream(server, FEED, client=as_alice) as two,
        open_raw_stream(server, FEED, client=as_bob) as three,
    ):
        job_id = await ask(as_alice)
        a = await until_settled(one, 1)
        b = await until_settled(two, 1)
        bob_job = await ask(as_bob)
        c = await until_settled(three, 1)
    assert a[0].data == b[0].data and a[0].data["jobId"] == job_id
    assert c[0].data["jobId"] == bob_job


async def test_the_feed_needs_a_login(server):
    async with open_raw_stream(server, FEED) as stream:
        assert stream.status == 401


async def test_a_bad_mine_is_422(as_alice):
    response = await as_alice.get(FEED, params={"mine": "maybe"})
    assert response.status_code == 422
