"""Fair share between users: the dispatcher takes ready jobs round-robin
across their owners (oldest first within each), so one user's backlog holds
another user's job back by at most one run slot, and
``CREWBOARD_USER_CONCURRENCY`` caps one user's running jobs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import trio

from crewboard import sessionlog
from crewboard.board import db, dispatch
from crewboard.board import users as board_users
from crewboard.board.models import Event, JobStatus, RunOutcome, User
from crewboard.bootstrap import open_home
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.home import Home
from crewboard.wakeup import wake_supervisor
from tests.conftest import make_config
from tests.support import crews
from tests.support.supervisor import supervising, wait_for

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board


@pytest.fixture
def board(tmp_path: Path):
    def make(**overrides: object) -> tuple[Config, Home]:
        config = make_config(tmp_path / "home", **overrides)
        return config, open_home(config)

    yield make
    db.close()


def user(email: str) -> int:
    return board_users.create_user(email, None, now=utcnow()).id


def dispatched_after(event_id: int) -> list[int]:
    """Jobs dispatched after the event ``event_id``, in order."""
    rows = (
        Event.select(Event.job)
        .where((Event.kind == "dispatched") & (Event.id > event_id))
        .order_by(Event.id)
    )
    return [row.job_id for row in rows]


def test_claims_take_owners_in_turn_oldest_first_within_each(board) -> None:
    board()
    a, b, c = user("a@example.test"), user("b@example.test"), user("c@example.test")
    a_jobs = crews.backlog(a, 3)
    b_jobs = crews.backlog(b, 2)
    c_jobs = crews.backlog(c, 1)
    assert crews.claim_in_turn(4) == [a_jobs[0], b_jobs[0], c_jobs[0], a_jobs[1]]
    # The next batch carries on after the last owner served.
    assert crews.claim_in_turn(4, after_owner=a) == [b_jobs[1], a_jobs[2]]
    assert crews.claim_in_turn(4) == []


def test_user_concurrency_caps_one_users_running_jobs(board) -> None:
    board()
    a, b = user("a@example.test"), user("b@example.test")
    a_jobs = crews.backlog(a, 5)
    b_jobs = crews.backlog(b, 1)
    assert crews.claim_in_turn(4, user_concurrency=2) == [a_jobs[0], b_jobs[0], a_jobs[1]]
    # a runs two already, b has nothing left: nothing more while they run.
    assert crews.claim_in_turn(4, user_concurrency=2) == []
    run = next(r for r in crews.runs(a_jobs[0]) if r.outcome == RunOutcome.RUNNING)
    dispatch.finish_run(run.id, RunOutcome.SUCCEEDED, result="ok", now=utcnow())
    assert crews.claim_in_turn(4, user_concurrency=2) == [a_jobs[2]]


def test_a_disabled_users_jobs_are_never_claimed(board) -> None:
    board()
    a, b = user("a@example.test"), user("b@example.test")
    crews.backlog(a, 2)
    b_jobs = crews.backlog(b, 1)
    disable(a)
    assert crews.claim_in_turn(4) == [b_jobs[0]]


@db.write
def disable(user_id: int) -> None:
    """What disabling an account sets on the board."""
    User.update(disabled=True).where(User.id == user_id).execute()


async def test_one_users_backlog_delays_anothers_job_by_at_most_one_run_slot(board) -> None:
    # Slow jobs: A's four runners are busy for a while when B's job arrives.
    config, home = board(concurrency=4, poll_s=3600.0)
    a, b = user("a@example.test"), user("b@example.test")
    a_jobs = crews.backlog(a, 16, prompt="/sleep 1.5\nThen answer.")
    async with supervising(config):
        await wait_for(
            lambda: (
                sum(1 for job_id in a_jobs if crews.job(job_id).status == JobStatus.RUNNING) == 4
            ),
            what="A's first four jobs running",
        )
        marker = Event.select(Event.id).order_by(Event.id.desc()).first().id
        (b_job,) = crews.backlog(b, 1)
        wake_supervisor(home)
        await wait_for(
            lambda: crews.job(b_job).status == JobStatus.DONE, timeout_s=60, what="B's job done"
        )
    order = dispatched_after(marker)
    # The first slot to free up after B's job arrived went to B's job.
    assert order[0] == b_job
    assert all(job_id in a_jobs for job_id in order[1:])


async def test_a_freed_slot_goes_to_the_next_owner_under_the_per_user_cap(board) -> None:
    # A run's end claims its slot's next job itself: it too takes owners in
    # turn and keeps each under CREWBOARD_USER_CONCURRENCY.
    config, _ = board(concurrency=2, user_concurrency=1)
    a, b = user("a@example.test"), user("b@example.test")
    a_jobs = crews.backlog(a, 3, prompt="/sleep 0.3\nThen answer.")
    b_jobs = crews.backlog(b, 3, prompt="/sleep 0.3\nThen answer.")
    marker = Event.select(Event.id).order_by(Event.id.desc()).first().id
    most: Counter[int] = Counter()
    async with supervising(config):
        with trio.fail_after(30):
            while not all(crews.job(j).status == JobStatus.DONE for j in a_jobs + b_jobs):
                live = await trio.to_thread.run_sync(crews.live_runs)
                running = Counter(crews.job(run.job_id).owner_id for run in live)
                most |= running  # the most of each owner's seen at once
                await trio.sleep(0.02)
    assert most == {a: 1, b: 1}
    order = dispatched_after(marker)
    assert sorted(order) == sorted(a_jobs + b_jobs)
    # Each owner's jobs run oldest first, and neither owner waits for the other's backlog.
    assert [j for j in order if j in a_jobs] == a_jobs
    assert [j for j in order if j in b_jobs] == b_jobs
    assert set(order[:2]) == {a_jobs[0], b_jobs[0]}


async def test_a_prompt_larger_than_a_pipe_reaches_a_forked_runner_whole(board) -> None:
    # The spec goes into the runner's stdin before the fork only as far as
    # the pipe takes it; the rest must follow once the runner exists.
    config, _ = board()
    owner = user("a@example.test")
    prompt = "Summarise this. " + "lorem ipsum " * 20_000  # about 240 KB
    (job_id,) = crews.backlog(owner, 1, prompt=prompt)
    async with supervising(config):
        await wait_for(lambda: crews.job(job_id).status == JobStatus.DONE, what="done")
    (run,) = crews.runs(job_id)
    first = sessionlog.read_records(run.log_path)[0]
    assert first["type"] == "user_message" and prompt.strip() in first["text"]
