"""The board's change feed on PostgreSQL, where transactions commit out of
the order they took their ids in: a follower still gets every event exactly
once, and a write on one node wakes the feed followers of another."""

from __future__ import annotations

import dataclasses
import random
import threading
import time

import pytest
import trio

from crewboard.board import db
from crewboard.board.events import EventKind, record_event
from crewboard.board.models import Job
from crewboard.clock import utcnow
from crewboard.web import board_changes, board_feed, sse
from crewboard.web.server import serve_web
from tests.conftest import signed_in
from tests.support import crews
from tests.support.crews import JobDef
from tests.support.sse_client import Frame, open_raw_stream

pytestmark = pytest.mark.postgres

FEED = "/api/board/events"
WRITERS = 6
EVENTS_PER_WRITER = 150
# A follower that has heard nothing for this long has been sent all it will get.
QUIET_S = 5.0


@pytest.fixture
def config(pg):
    return pg[0]


@pytest.fixture
def home(pg):
    return pg[1]


def write_slowly(writer: int, job_id: int) -> None:
    """Comments on ``job_id``, each in its own transaction that stays open a
    few random milliseconds after its event took its id, so that writers
    commit out of id order as busy nodes do."""
    chance = random.Random(writer)
    try:
        for n in range(EVENTS_PER_WRITER):
            with db.database.atomic():
                job = Job.get_by_id(job_id)
                record_event(
                    EventKind.COMMENT,
                    job=job,
                    actor="supervisor",
                    message=f"{writer}:{n}",
                    now=utcnow(),
                )
                time.sleep(chance.uniform(0, 0.012))
    finally:
        db.database.close()


async def write_in_parallel(job_id: int) -> None:
    threads = [threading.Thread(target=write_slowly, args=(w, job_id)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        await trio.to_thread.run_sync(thread.join)


async def follow_with_resumes(
    server: str, client, following: trio.Event, expected: int, every: int
) -> list[Frame]:
    """Frames of the feed until ``expected`` arrived or it went quiet,
    reconnecting with ``Last-Event-ID`` after every ``every`` frames, as a
    client on a flaky network does; ``following`` is set once the first
    stream follows."""
    frames: list[Frame] = []
    resume: dict[str, str] = {}
    while len(frames) < expected:
        async with open_raw_stream(server, FEED, client=client, **resume) as stream:
            if not following.is_set():
                await stream.frames_until_pings(1)
                following.set()
            batch: list[Frame] = []
            while len(batch) < every and len(frames) + len(batch) < expected:
                with trio.move_on_after(QUIET_S):
                    frame = await stream.next_frame()
                    assert frame is not None, "the feed ended"
                    batch.append(frame)
                    continue
                break  # quiet: nothing more is coming
        if not batch:
            break
        frames += batch
        resume = {"Last_Event_ID": str(batch[-1].id)}
    return frames


async def test_parallel_writers_committing_out_of_order_lose_no_event(
    server, as_admin, monkeypatch
):
    monkeypatch.setattr(sse, "PING_S", 0.3)
    job_id = crews.add_crew({"a": JobDef()})["a"]
    wanted = {f"{w}:{n}" for w in range(WRITERS) for n in range(EVENTS_PER_WRITER)}
    following = trio.Event()
    frames: list[Frame] = []

    async def read() -> None:
        frames.extend(await follow_with_resumes(server, as_admin, following, len(wanted), 97))

    async def write() -> None:
        await following.wait()
        await write_in_parallel(job_id)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        nursery.start_soon(write)
    messages = [frame.data["message"] for frame in frames]
    assert len(messages) == len(set(messages)), "an event came twice"
    assert set(messages) == wanted, f"{len(wanted - set(messages))} events never came"
    assert all(int(frame.id) == frame.data["position"] for frame in frames)
    positions = [int(frame.id) for frame in frames]
    assert positions == sorted(positions), "frame ids went back: resuming from one skips events"


@pytest.fixture
async def other_node(config, admin, tmp_path, nursery) -> str:
    """A second web node on the same board, with a home of its own (its own
    files, secret key and feed); yields its base URL."""
    other = dataclasses.replace(config, home=tmp_path / "other-home")
    stop = trio.Event()
    binds = await nursery.start(
        lambda task_status: serve_web(other, shutdown=stop, task_status=task_status)
    )
    yield binds[0]
    stop.set()


@pytest.fixture
def never_polling(monkeypatch) -> None:
    """Nodes started after this see a change only when told of it: a feed
    that polled would hear of nothing within a test's deadline."""
    monkeypatch.setattr(board_feed, "POLL_S", 3600)
    monkeypatch.setattr(board_changes, "WATCHED_POLL_S", 3600)


async def test_a_write_on_one_node_wakes_the_feed_followers_of_another(
    never_polling, server, other_node, as_admin, admin, monkeypatch
):
    monkeypatch.setattr(sse, "PING_S", 0.3)
    job_id = crews.add_crew({"a": JobDef()})["a"]
    async with (
        signed_in(other_node, admin) as on_other,
        open_raw_stream(other_node, FEED, client=on_other) as stream,
    ):
        await stream.frames_until_pings(1)
        for text in ("first", "second"):
            response = await as_admin.post(f"/api/jobs/{job_id}/comments", json={"text": text})
            assert response.status_code == 201, response.text
            (frame,) = await stream.take(1, timeout_s=10)
            assert frame.data["kind"] == "comment" and frame.data["jobId"] == job_id
            assert frame.data["data"]["commentId"] == response.json()["id"]
