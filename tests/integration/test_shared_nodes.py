"""Several nodes on one PostgreSQL board, each with its own home: work created
through any node's web is claimed at once by supervisors elsewhere, a board
that does not answer in time is a clear 503, and the connections a process
takes come back to its pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import psycopg2
import pytest
import trio

from crewboard.board import db
from crewboard.board.models import Job, Run
from crewboard.config import Config
from tests.conftest import add_user, make_config, signed_in
from tests.support.supervisor import supervising, wait_for
from tests.support.web_nodes import web_node

pytestmark = pytest.mark.postgres

# A poll interval no test outlives: what happens, happens through a wake-up.
NEVER_S = 3600.0


def node(tmp_path: Path, name: str, board: Config, **overrides: object) -> Config:
    """Another host's settings: its own home, the same board."""
    return make_config(tmp_path / name, database_url=board.database_url, **overrides)


async def ask(client) -> int:
    response = await client.post(
        "/api/jobs", json={"templateId": "ask", "inputs": {"question": "Why is the sky blue?"}}
    )
    assert response.status_code == 201, response.text
    return response.json()["jobIds"][0]


async def test_a_job_created_on_one_host_is_claimed_by_a_supervisor_on_another_at_once(
    pg, tmp_path: Path
):
    board, _ = pg
    alice = await db.call(add_user, board, "alice@example.test")
    first = node(tmp_path, "supervisor-1", board, poll_s=NEVER_S)
    second = node(tmp_path, "supervisor-2", board, poll_s=NEVER_S)
    web = node(tmp_path, "web", board)
    async with (
        supervising(first),
        supervising(second),
        web_node(web) as url,
        signed_in(url, alice) as client,
    ):
        job_id = await ask(client)
        # Neither supervisor polls within the test, and neither shares the
        # web's home (its socket): only the wake-up the board sent with the
        # new job can get it claimed.
        run = await wait_for(lambda: Run.get_or_none(Run.job == job_id), 20, "the job claimed")
        assert run.supervisor_id
        await wait_for(lambda: Job.get_by_id(job_id).status == "done", 30, "the job done")


@asynccontextmanager
async def table_locked(url: str, table: str) -> AsyncIterator[None]:
    """Another connection holding ``table`` locked, as a long migration or a
    stuck transaction on another node would."""
    conn = await trio.to_thread.run_sync(partial(psycopg2.connect, url))
    try:
        await trio.to_thread.run_sync(
            conn.cursor().execute, f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE'
        )
        yield
    finally:
        conn.rollback()
        conn.close()


def _count_jobs() -> int:
    return Job.select().count()


async def test_a_statement_stuck_behind_a_lock_is_a_503_and_the_board_answers_again(
    pg, tmp_path: Path
):
    board, _ = pg
    alice = await db.call(add_user, board, "alice@example.test")
    web = node(tmp_path, "web", board, database_statement_timeout_s=0.5)
    async with web_node(web) as url, signed_in(url, alice) as client:
        async with table_locked(board.database_url, "job"):
            with trio.fail_after(20):
                response = await client.get("/api/jobs")
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "service_unavailable"
            assert "try again" in response.json()["error"]["message"].lower()
            assert response.headers["Retry-After"] == "1"
            # What the supervisor sees: an error it retries, never a crash.
            with pytest.raises(Exception) as raised:
                await db.call(_count_jobs)
            assert db.is_statement_timeout(raised.value)
            assert db.is_transient_error(raised.value)
        # The lock gone, the same request succeeds on the same pool.
        response = await client.get("/api/jobs")
        assert response.status_code == 200, response.text


async def test_board_calls_hand_their_connections_back_to_the_pool(pg):
    board, _ = pg
    db.close()
    db.connect(url=board.database_url, statement_timeout_s=5, pool_size=2)
    counts: list[int] = []

    async def count() -> None:
        counts.append(await db.call(_count_jobs))

    # Eight worker threads and two connections: each call must give its
    # connection back for the others to get one.
    with trio.fail_after(30):
        for _ in range(3):
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(count)
    assert counts == [0] * 24
