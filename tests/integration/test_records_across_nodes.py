"""Several hosts on one PostgreSQL board: a run's or chat turn's records reach
the board as they are written, so a web node whose home does not hold the
run's log streams, replays and resumes it with the frames the node that ran
it sends; recovery decides an orphan's end from the board's copy when its
host's home is gone; and deleting a job deletes its records.

Node A is a home with a supervisor and a web app; node B a second web app
on another home, sharing only the board."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
import trio

from crewboard import sessionlog
from crewboard.board import db, records
from crewboard.board.models import LogRecord, RunOutcome
from crewboard.board.recovery import recover_orphans
from crewboard.bootstrap import open_home
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.home import Home
from crewboard.sessionlog import LogWriter
from crewboard.web import loghub
from tests.conftest import Account, add_user, make_config, signed_in
from tests.support import chat, crews
from tests.support.board_jobs import start_run
from tests.support.sse_client import Frame, RawStream, collect, open_raw_stream
from tests.support.supervisor import supervising, wait_for
from tests.support.web_nodes import web_node

pytestmark = pytest.mark.postgres

STREAM_TIMEOUT_S = 30.0


@asynccontextmanager
async def two_nodes(
    config_a: Config, config_b: Config, account: Account
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Clients signed in as ``account`` on a web node of each home."""
    async with web_node(config_a) as url_a, web_node(config_b) as url_b:  # noqa: SIM117
        async with signed_in(url_a, account) as a, signed_in(url_b, account) as b:
            yield a, b


def second_home(config: Config, tmp_path: Path) -> tuple[Config, Home]:
    """Another host's home on the same board."""
    other = make_config(tmp_path / "home-b", database_url=config.database_url)
    return other, open_home(other)


def shown(frames: list[Frame]) -> list[tuple[str | None, str, object]]:
    return [(frame.id, frame.type, frame.data) for frame in frames]


async def test_a_job_run_on_one_host_streams_live_replays_and_resumes_on_another(
    pg, tmp_path
) -> None:
    config_a, home_a = pg
    config_b, home_b = second_home(config_a, tmp_path)
    admin = add_user(config_a, "admin@example.test", admin=True)
    # The runner pauses before it answers: the stream from B is live.
    job_id = crews.add_job("/sleep 1\nThen answer.")
    stream = f"/api/jobs/{job_id}/stream"
    async with two_nodes(config_a, config_b, admin) as (a, b):
        following = open_raw_stream(str(b.base_url), stream, client=b)
        async with following as followed, supervising(config_a):
            run = await wait_for(lambda: (crews.runs(job_id) or [None])[0], what="a run")
            # Records arrive before the run is over.
            (first,) = await followed.take(1, timeout_s=STREAM_TIMEOUT_S)
            assert first.type == "user_message"
            assert crews.runs(job_id)[0].outcome == RunOutcome.RUNNING
            live = [first, *await _frames_through(followed, "done")]
        # The run's log is on A's disk only.
        assert home_a.run_log(run.id).is_file()
        assert not home_b.run_log(run.id).exists()

        async with a.stream("GET", stream) as response:
            from_a = await collect(response, timeout_s=STREAM_TIMEOUT_S)
        async with b.stream("GET", stream) as response:
            replayed_on_b = await collect(response, timeout_s=STREAM_TIMEOUT_S)
        resume_at = live[1].id
        assert resume_at is not None
        headers = {"Last-Event-ID": resume_at}
        async with b.stream("GET", stream, headers=headers) as response:
            resumed_on_b = await collect(response, timeout_s=STREAM_TIMEOUT_S)

    assert [f.type for f in from_a][-2:] == ["final_result", "done"]
    assert from_a[-1].data == {"runId": run.id, "outcome": "succeeded"}
    assert shown(live) == shown(from_a)
    assert shown(replayed_on_b) == shown(from_a)
    assert shown(resumed_on_b) == shown(from_a[2:])


async def test_a_chat_turn_on_one_host_streams_and_replays_on_another(pg, tmp_path) -> None:
    config_a, home_a = pg
    config_b, home_b = second_home(config_a, tmp_path)
    alice: Account = add_user(config_a, "alice@example.test")
    async with two_nodes(config_a, config_b, alice) as (a, b):
        session = await chat.create_session(a, sessionName="across")
        follow = f"/api/session/replay/{session['sessionName']}?follow=1"
        answered = trio.Event()
        turn: list[Frame] = []

        async def send_on_a() -> None:
            turn.extend(await chat.send(a, session["id"], "/sleep 1\nHello from A."))
            answered.set()

        following = open_raw_stream(str(b.base_url), follow, client=b)
        async with following as followed, trio.open_nursery() as nursery:
            nursery.start_soon(send_on_a)
            (first,) = await followed.take(1, timeout_s=STREAM_TIMEOUT_S)
            # B shows the turn while A's runner is still at it.
            assert first.type == "user_message" and not answered.is_set()
            followed_on_b = [first, *await _frames_through(followed, "final_result", "error")]
        replay_a = await chat.replay(a, session["sessionName"])
        replay_b = await chat.replay(b, session["sessionName"])
        resumed_b = await chat.replay(b, session["sessionName"], last_event_id=1)
        # B streamed and replayed A's turn without its log on B's disk.
        assert home_a.chat_log(session["id"]).is_file()
        assert not home_b.chat_log(session["id"]).exists()
        # The next turn, on B, goes on from A's: seqs and context.
        second = await chat.send(b, session["id"], "And now from B.")
        both_on_a = await chat.replay(a, session["sessionName"])
        stored = records.read_all(records.chat_key(session["id"]))
        deleted = await b.delete(f"/api/session/byName/{session['sessionName']}")
        assert deleted.status_code == 204, deleted.text

    assert turn[-1].type == "done"
    assert replay_a[0].type == "user_message"
    assert replay_a[-1].type == "final_result"
    assert shown(replay_b) == shown(replay_a)
    assert shown(followed_on_b) == shown(replay_a)
    assert shown(resumed_b) == shown(replay_a[1:])
    assert second[-1].type == "done"
    assert shown(both_on_a[: len(replay_a)]) == shown(replay_a)
    later = both_on_a[len(replay_a) :]
    assert later[0].type == "user_message" and later[0].data["text"] == "And now from B."
    assert [int(f.id or 0) for f in both_on_a] == list(range(1, len(both_on_a) + 1))
    # Deleting the session deleted its records.
    assert len(stored) == len(both_on_a)
    assert records.read_all(records.chat_key(session["id"])) == []


@contextmanager
def board_refusing_final_results() -> Iterator[Callable[[], None]]:
    """Until the yielded function is called, the board refuses to store a
    ``final_result`` record with a serialization failure, an error
    PostgreSQL asks its clients to retry (a board briefly away, as a
    failover or a restart would be)."""
    _commit(
        "CREATE TABLE refuse_final (on_ boolean);"
        "INSERT INTO refuse_final VALUES (true);"
        "CREATE FUNCTION refuse_final() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        "  IF (NEW.body::jsonb ->> 'type') = 'final_result' AND EXISTS (SELECT 1 FROM refuse_final)"
        "  THEN RAISE EXCEPTION 'the board is away' USING ERRCODE = 'serialization_failure';"
        "  END IF; RETURN NEW; END $$;"
        "CREATE TRIGGER refuse_final BEFORE INSERT ON log_record"
        "  FOR EACH ROW EXECUTE FUNCTION refuse_final();"
    )
    try:
        yield lambda: _commit("DELETE FROM refuse_final")
    finally:
        _commit(
            "DROP TRIGGER refuse_final ON log_record; DROP FUNCTION refuse_final();"
            "DROP TABLE refuse_final;"
        )


def _commit(sql: str) -> None:
    with db.database.atomic():
        db.database.execute_sql(sql)


async def test_a_turn_ended_while_the_board_was_away_ends_everywhere_once_it_is_back(
    pg, tmp_path
) -> None:
    config_a, home_a = pg
    config_b, home_b = second_home(config_a, tmp_path)
    alice: Account = add_user(config_a, "alice@example.test")
    async with two_nodes(config_a, config_b, alice) as (a, b):
        session = await chat.create_session(a, sessionName="blip")
        key = records.chat_key(session["id"])
        turn: list[Frame] = []

        async def send_on_a() -> None:
            turn.extend(await chat.send(a, session["id"], "Hello from A."))

        async def ended_on_a() -> bool:
            local = sessionlog.read_records(home_a.chat_log(session["id"]))
            got = (await a.get(f"/api/session/get/{session['id']}")).json()
            return bool(local) and local[-1]["type"] == "final_result" and not got["live"]

        with board_refusing_final_results() as board_back:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_on_a)
                # The runner answered and A closed the turn, but the board
                # refused its end: the sender's stream, read from the
                # board, waits for it.
                with trio.fail_after(STREAM_TIMEOUT_S):
                    while not await ended_on_a():
                        await trio.sleep(0.05)
                assert "final_result" not in [r["type"] for r in records.read_all(key)]
                assert not turn
                board_back()
        replay_b = await chat.replay(b, "blip")
        replay_a = await chat.replay(a, "blip")
    assert turn[-1].type == "done"
    assert not home_b.chat_log(session["id"]).exists()
    assert replay_b[-1].type == "final_result"
    assert shown(replay_b) == shown(replay_a)


async def _frames_through(stream: RawStream, *last: str) -> list[Frame]:
    """The stream's frames up to one of type ``last``."""
    got: list[Frame] = []
    with trio.fail_after(STREAM_TIMEOUT_S):
        while not got or got[-1].type not in last:
            frame = await stream.next_frame()
            assert frame is not None, "the stream ended before the turn did"
            got.append(frame)
    return got


def _stored(run_id: int) -> list[dict]:
    return records.read_all(records.run_key(run_id))


def _run_on_host_a(home_a: Home) -> tuple[int, int, Path, LogWriter]:
    """A job's run on host A, its log begun; the caller writes on and closes it."""
    job_id = crews.add_job("Say hello.")
    run_id = start_run(job_id, home_a)
    path = home_a.run_log(run_id)
    writer = LogWriter(path)
    writer.append("user_message", text="Say hello.")
    return job_id, run_id, path, writer


def test_recovery_decides_from_the_boards_terminal_record_when_the_host_is_gone(pg) -> None:
    _, home_a = pg
    job_id, run_id, path, log = _run_on_host_a(home_a)
    with log as writer:
        writer.append("final_result", text="hello", agentName="assistant")
        # Written after the end: never shipped, never shown.
        writer.append("text", text="after the end")
    shipper = records.Shipper(records.run_key(run_id), path)
    assert shipper.ship_new() == 2
    assert shipper.ended and shipper.ship_new() == 0
    assert [r["type"] for r in _stored(run_id)] == ["user_message", "final_result"]

    shutil.rmtree(home_a.root)  # the host that ran it is gone, and its disk
    (recovered,) = recover_orphans("sup-b", "host-b", lambda pid: False, now=utcnow())
    assert recovered.run_id == run_id and recovered.outcome == RunOutcome.SUCCEEDED
    assert crews.job(job_id).result == "hello"


def test_a_run_recovered_from_another_host_ends_in_the_board_not_in_a_local_file(pg) -> None:
    _, home_a = pg
    _, run_id, path, log = _run_on_host_a(home_a)
    with log as writer:
        writer.append("text", text="half way")
    assert records.Shipper(records.run_key(run_id), path).ship_new() == 2

    shutil.rmtree(home_a.root)  # the host that ran it is gone mid-run
    (recovered,) = recover_orphans("sup-b", "host-b", lambda pid: False, now=utcnow())
    assert recovered.outcome == RunOutcome.INTERRUPTED
    stored = _stored(run_id)
    assert [r["type"] for r in stored] == ["user_message", "text", "error"]
    assert stored[-1]["seq"] == 3 and "interrupted" in stored[-1]["message"]
    # The dead host's path means nothing here: nothing was written at it.
    assert not Path(path).exists()


async def test_deleting_a_job_deletes_its_records(pg, tmp_path) -> None:
    config_a, _ = pg
    admin = add_user(config_a, "admin@example.test", admin=True)
    job_id = crews.add_job("Say hello.")
    async with supervising(config_a):
        await wait_for(lambda: crews.job(job_id).status == "done", what="the job done")
    (run,) = crews.runs(job_id)
    assert [r["type"] for r in _stored(run.id)][-1] == "final_result"
    async with web_node(config_a) as url, signed_in(url, admin) as client:
        response = await client.delete(f"/api/jobs/{job_id}")
        assert response.status_code in (200, 204), response.text
    assert _stored(run.id) == []
    assert LogRecord.select().where(LogRecord.run == run.id).count() == 0


async def test_a_follower_is_woken_by_the_boards_notification(pg, monkeypatch) -> None:
    _, home = pg
    # Only a notification can wake the reader within the test's deadline.
    monkeypatch.setattr(loghub, "BOARD_POLL_S", 3600.0)
    run_id = start_run(crews.add_job("Say hello."), home)
    path = home.run_log(run_id)
    shipper = records.Shipper(records.run_key(run_id), path)
    got: list[dict] = []
    first = trio.Event()

    async def follow(hub: loghub.LogHub) -> None:
        async for record in hub.follow(path):
            got.append(record)
            first.set()

    with LogWriter(path) as writer, trio.fail_after(STREAM_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            hub = await nursery.start(loghub.serve_log_hub)
            assert hub.from_board
            async with trio.open_nursery() as following:
                following.start_soon(follow, hub)
                writer.append("user_message", text="Say hello.")
                await db.call(shipper.ship_new)
                await first.wait()
                writer.append("text", text="hello")
                writer.append("final_result", text="hello", agentName="assistant")
                writer.append("text", text="after the end")
                await db.call(shipper.ship_new)
            nursery.cancel_scope.cancel()
    assert [r["type"] for r in got] == ["user_message", "text", "final_result"]
    assert [r["seq"] for r in got] == [1, 2, 3]
