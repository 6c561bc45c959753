"""Following a chat session across turns (``replay?follow=true``), as a
second tab does, and the refusals a chat client turns into advice: the 409
of a turn already running, and a message over the length limit."""

from __future__ import annotations

from urllib.parse import quote

import trio

from tests.support.chat import TURN_TIMEOUT_S, create_session, next_chunk, open_turn, send
from tests.support.sse_client import Frame, RawStream, open_raw_stream


async def frames_until(raw: RawStream, kind: str) -> list[Frame]:
    """Frames up to and including the first of type ``kind``."""
    frames = []
    with trio.fail_after(TURN_TIMEOUT_S):
        while (frame := await raw.next_frame()) is not None:
            frames.append(frame)
            if frame.type == kind:
                return frames
    raise AssertionError(f"the stream ended before a {kind} frame: {frames}")


async def test_a_follower_sees_the_stored_log_then_later_turns_as_they_run(as_alice, server):
    session = await create_session(as_alice, sessionName="followed")
    await send(as_alice, session["id"], "before")
    path = f"/api/session/replay/{quote('followed')}?follow=true"
    async with open_raw_stream(server, path, client=as_alice) as raw:
        assert raw.status == 200
        stored = await frames_until(raw, "final_result")
        assert stored[0].type == "user_message" and stored[0].data["text"] == "before"
        # Another client starts a turn: the follower learns of it and sees it to its end.
        async with open_turn(as_alice, session["id"], "/sleep 0.5\nafter") as turn:
            await next_chunk(turn, "agent_start")
            later = await frames_until(raw, "final_result")
        assert later[0].type == "user_message" and "after" in later[0].data["text"]
        assert "after" in later[-1].data["text"]
        ids = [int(f.id) for f in stored + later]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_a_follower_resumes_after_last_event_id(as_alice, server):
    session = await create_session(as_alice, sessionName="resumed")
    first = await send(as_alice, session["id"], "one")
    await send(as_alice, session["id"], "two")
    path = f"/api/session/replay/{quote('resumed')}?follow=true"
    async with open_raw_stream(server, path, client=as_alice, Last_Event_ID=first[-1].id) as raw:
        frames = await frames_until(raw, "final_result")
    assert frames[0].type == "user_message" and frames[0].data["text"] == "two"


async def test_deleting_the_session_ends_its_followers(as_alice, server):
    session = await create_session(as_alice, sessionName="short lived")
    await send(as_alice, session["id"], "hello")
    path = f"/api/session/replay/{quote('short lived')}?follow=true"
    async with open_raw_stream(server, path, client=as_alice) as raw:
        await frames_until(raw, "final_result")
        deleted = await as_alice.delete(f"/api/session/byName/{quote('short lived')}")
        assert deleted.status_code == 204
        with trio.fail_after(TURN_TIMEOUT_S):
            assert await raw.next_frame() is None  # the stream ends
    # The id may now go to someone else's session: nothing of it reached us.


async def test_follow_is_a_flag(as_alice):
    await create_session(as_alice, sessionName="flagged")
    response = await as_alice.get("/api/session/replay/flagged?follow=maybe")
    assert response.status_code == 422
    assert response.json()["error"]["details"]["fields"] == {"follow": "must be true or false"}


async def test_refusals_say_what_would_be_accepted(as_alice):
    session = await create_session(as_alice)
    url = f"/api/session/newUserMessage/{session['id']}"
    long = await as_alice.post(url, json={"message": "x" * 150_000})
    assert long.status_code == 422
    error = long.json()["error"]
    assert error["message"] == "message: must be at most 100000 characters"
    assert error["details"]["limits"] == {"message": {"maxLength": 100_000, "length": 150_000}}

    async with open_turn(as_alice, session["id"], "/sleep 30\nslow") as turn:
        await next_chunk(turn, "agent_start")
        busy = await as_alice.post(url, json={"message": "me too"})
        assert busy.status_code == 409
        assert busy.json()["error"]["details"] == {"turnRunning": True}
        assert "still being written" in busy.json()["error"]["message"]
        assert (await as_alice.post(f"/api/session/delete/{session['id']}")).status_code == 204
