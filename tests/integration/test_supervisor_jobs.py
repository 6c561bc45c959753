"""A real supervisor in the test's nursery running real runner processes on
the offline model: crews flowing to done, retries, timeouts, cancels,
crashes, the concurrency cap and wake-ups."""

from __future__ import annotations

import os
import signal
from datetime import datetime
from pathlib import Path

import pytest
import trio

from crewboard import sessionlog
from crewboard.board.events import SUPERVISOR
from crewboard.board.models import Event, Heartbeat, JobStatus, RunOutcome
from crewboard.bootstrap import open_home
from crewboard.config import Config
from crewboard.home import Home
from crewboard.wakeup import wake_supervisor
from tests.conftest import make_config
from tests.support import crews
from tests.support.crews import JobDef
from tests.support.supervisor import children_running, supervising, wait_for

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board


@pytest.fixture
def board(tmp_path: Path):
    """Open a home for a config built by the test; yields a function that
    takes the config's overrides and returns (config, home)."""
    from crewboard.board import db

    def make(**overrides: object) -> tuple[Config, Home]:
        config = make_config(tmp_path / "home", **overrides)
        return config, open_home(config)

    yield make
    db.close()


# A poll interval no test outlives: what happens, happens through a wake-up.
NEVER_S = 3600.0
# How a runner that stops on SIGTERM exits (128 + 15); a SIGKILL shows as -9.
EXIT_ON_SIGTERM = 143


def beat_since(moment: datetime) -> bool:
    """Whether the supervisor has written its heartbeat since ``moment``."""
    beat = Heartbeat.get_or_none()
    return beat is not None and beat.beat_at > moment


def job_status(job_id: int, status: str):
    return lambda: crews.job(job_id).status == status


def live_run(job_id: int):
    def probe():
        return next((r for r in crews.runs(job_id) if r.outcome == RunOutcome.RUNNING), None)

    return probe


def events(job_id: int) -> list[Event]:
    return list(Event.select().where(Event.job == job_id).order_by(Event.id))


@pytest.mark.parametrize("forkserver", [True, False], ids=["forked", "spawned"])
async def test_a_crew_flows_to_done_passing_results_down(board, forkserver: bool) -> None:
    config, home = board()
    ids = crews.add_crew(
        {
            "research": JobDef("Research the migration of swallows."),
            "draft": JobDef("Draft a note from the research.", needs=["research"]),
            "review": JobDef("Review the draft.", needs=["draft"], artifact="review.md"),
        }
    )
    async with supervising(config, forkserver=forkserver):
        await wait_for(job_status(ids["review"], JobStatus.DONE), what="the last job done")
    research, draft, review = (crews.job(ids[k]) for k in ("research", "draft", "review"))
    assert all(j.status == JobStatus.DONE for j in (research, draft, review))
    assert "migration of swallows" in research.result
    # Each child was told its parent's result, and its own result quotes it.
    (draft_run,) = crews.runs(draft.id)
    prompt = sessionlog.read_records(draft_run.log_path)[0]
    assert prompt["type"] == "user_message"
    assert research.result.splitlines()[0] in prompt["text"]
    assert "migration of swallows" in review.result
    (review_run,) = crews.runs(review.id)
    assert review_run.outcome == RunOutcome.SUCCEEDED and review_run.exit_code == 0
    assert review_run.artifact == "review.md"
    assert Path(config.home, "artifacts", str(review_run.id), "review.md").read_text()
    assert review_run.duration_s is not None and review_run.ended_at is not None
    kinds = [e.kind for e in events(draft.id) if e.actor == SUPERVISOR]
    assert kinds == ["ready", "dispatched", "run_started", "run_ended", "done"]
    # A run that used no file leaves its log and nothing else: no empty
    # workspace, artifact folder or stderr file.
    (research_run,) = crews.runs(research.id)
    assert Path(research_run.log_path).is_file()
    assert not home.workspace(research_run.id).exists()
    assert not home.artifact_dir(research_run.id).exists()
    assert not home.run_stderr(research_run.id).exists()


async def test_a_failing_job_is_retried_then_blocked_with_the_reason(board) -> None:
    config, _ = board()
    job_id = crews.add_job("/fail the provider exploded", retries=1)
    async with supervising(config):
        await wait_for(job_status(job_id, JobStatus.BLOCKED), what="blocked")
    runs = crews.runs(job_id)
    assert [r.outcome for r in runs] == [RunOutcome.FAILED, RunOutcome.FAILED]
    assert all("the provider exploded" in (r.error or "") for r in runs)
    # The retry waited out its backoff (2 s after the first failure).
    gap_s = (runs[1].started_at - runs[0].ended_at).total_seconds()
    assert 1.9 <= gap_s < 6
    job = crews.job(job_id)
    assert "the provider exploded" in job.blocked_reason and job.attempts == 2
    assert "retry" in [e.kind for e in events(job_id)]
    assert sessionlog.last_record(runs[-1].log_path)["type"] == "error"


async def test_an_assistant_job_blocks_on_block_though_its_preset_lacks_the_tool(board) -> None:
    """The Ask template's assistant has no block tool; every job agent can block."""
    config, _ = board()
    job_id = crews.add_job("/block I need the budget first", agent="assistant", retries=1)
    async with supervising(config):
        await wait_for(job_status(job_id, JobStatus.BLOCKED), what="blocked")
    job = crews.job(job_id)
    assert "I need the budget first" in job.blocked_reason
    assert [r.outcome for r in crews.runs(job_id)] == [RunOutcome.BLOCKED]


async def test_a_job_past_its_timeout_is_stopped_retried_then_blocked(board) -> None:
    # A grace far longer than a runner needs: a SIGKILL would show as exit -9.
    config, _ = board(grace_s=20.0)
    job_id = crews.add_job("/sleep 600\nThen answer.", timeout_s=1, retries=1)
    async with supervising(config):
        await wait_for(job_status(job_id, JobStatus.BLOCKED), timeout_s=60, what="blocked")
    runs = crews.runs(job_id)
    assert [r.outcome for r in runs] == [RunOutcome.TIMED_OUT] * 2
    for run in runs:
        # Stopped at its timeout, not before, and the runner ended on the SIGTERM.
        assert run.duration_s >= 1.0
        assert run.exit_code == EXIT_ON_SIGTERM
        assert "timed out after 1 s" in run.error
        assert sessionlog.is_terminal(sessionlog.last_record(run.log_path))
    assert "timed out" in crews.job(job_id).blocked_reason


async def test_cancelling_a_running_job_stops_its_runner_and_blocks_it(board) -> None:
    config, home = board(poll_s=NEVER_S)  # only a wake-up can start a round
    job_id = crews.add_job("/sleep 30\nThen answer.", retries=3)
    async with supervising(config):
        run = await wait_for(live_run(job_id), what="the run to start")
        await wait_for(lambda: crews.runs(job_id)[0].pid, what="its pid")
        pid = crews.runs(job_id)[0].pid
        crews.request_cancel(job_id)
        assert wake_supervisor(home)
        await wait_for(job_status(job_id, JobStatus.BLOCKED), timeout_s=30, what="blocked")
    (run,) = crews.runs(job_id)
    assert run.outcome == RunOutcome.CANCELLED
    job = crews.job(job_id)
    assert job.blocked_reason.startswith("cancelled") and not job.cancel_requested
    assert job.attempts == 0  # a cancel is not a failure
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize("forkserver", [True, False], ids=["forked", "spawned"])
async def test_a_runner_killed_with_sigkill_is_seen_at_once_as_crashed(
    board, forkserver: bool
) -> None:
    config, _ = board(poll_s=NEVER_S)  # seen through the runner's exit, not a poll
    job_id = crews.add_job("/sleep 30\nThen answer.")
    async with supervising(config, forkserver=forkserver):
        await wait_for(lambda: (crews.runs(job_id) or [None])[0], what="a run")
        pid = await wait_for(lambda: crews.runs(job_id)[0].pid, what="its pid")
        assert os.getpgid(pid) == pid  # its own process group, so a stop takes its tools too
        os.kill(pid, signal.SIGKILL)
        await wait_for(job_status(job_id, JobStatus.BLOCKED), timeout_s=30, what="blocked")
    (run,) = crews.runs(job_id)
    assert run.outcome == RunOutcome.CRASHED and run.exit_code == -signal.SIGKILL
    assert "killed by SIGKILL" in run.error
    assert sessionlog.last_record(run.log_path)["type"] == "error"


async def test_never_more_runs_at_once_than_the_concurrency(board) -> None:
    config, _ = board(concurrency=2)
    ids = crews.add_crew({f"j{i}": JobDef("/sleep 0.4\nDone.") for i in range(6)})
    most = 0
    async with supervising(config):
        with trio.fail_after(20):
            while True:
                live = len(await trio.to_thread.run_sync(crews.live_runs))
                most = max(most, live)
                assert live <= 2
                statuses = {crews.job(i).status for i in ids.values()}
                if statuses == {JobStatus.DONE}:
                    break
                await trio.sleep(0.02)
    assert most == 2


async def test_a_wake_up_dispatches_at_once_without_waiting_for_the_poll(board) -> None:
    config, home = board(poll_s=NEVER_S)  # only a wake-up can start a round
    async with supervising(config):
        job_id = crews.add_job("Quick one.")
        added_at = crews.job(job_id).created_at
        # Unwoken, the new job waits for the next poll: at a heartbeat after it
        # was added, the supervisor is up and has not run it...
        await wait_for(lambda: beat_since(added_at), what="a heartbeat")
        assert crews.runs(job_id) == []
        # ...and a wake-up starts it.
        assert wake_supervisor(home)
        await wait_for(job_status(job_id, JobStatus.DONE), timeout_s=30, what="done")


async def test_a_job_whose_agent_is_gone_fails_without_a_runner(board) -> None:
    config, _ = board()
    job_id = crews.add_job("Hello.", agent="nobody-by-this-name")
    async with supervising(config):
        await wait_for(job_status(job_id, JobStatus.BLOCKED), what="blocked")
    (run,) = crews.runs(job_id)
    assert run.outcome == RunOutcome.FAILED and run.pid is None
    assert "nobody-by-this-name" in run.error
    assert sessionlog.last_record(run.log_path)["type"] == "error"


async def test_a_stop_drains_then_interrupts_a_long_run_and_requeues_it(board) -> None:
    # A grace far longer than a runner needs: a SIGKILL would show as exit -9.
    config, _ = board(drain_s=0.5, grace_s=20.0)
    job_id = crews.add_job("/sleep 600\nThen answer.")
    async with supervising(config):
        await wait_for(lambda: (crews.runs(job_id) or [None])[0], what="a run")
        await wait_for(lambda: crews.runs(job_id)[0].pid, what="its pid")
    # The stop did not wait for the run; its runner ended on the SIGTERM.
    (run,) = crews.runs(job_id)
    assert run.outcome == RunOutcome.INTERRUPTED and run.exit_code == EXIT_ON_SIGTERM
    job = crews.job(job_id)
    assert job.status == JobStatus.READY and job.attempts == 0 and job.interruptions == 1


async def test_if_the_runner_template_dies_runs_go_on_spawned(board) -> None:
    config, _ = board(poll_s=5.0)
    first = crews.add_job("/sleep 1\nFirst.")
    async with supervising(config):
        (template,) = children_running(os.getpid(), "crewboard.runner.template")
        forked = await wait_for(lambda: crews.runs(first) and crews.runs(first)[0].pid, what="pid")
        os.kill(template, signal.SIGKILL)
        # The run it forked is still followed to its end…
        await wait_for(job_status(first, JobStatus.DONE), what="the forked run to finish")
        # …and the next one is spawned as a fresh interpreter, a child of ours.
        second = crews.add_job("/sleep 1\nSecond.")
        await wait_for(lambda: crews.runs(second) and crews.runs(second)[0].pid, what="pid")
        assert children_running(os.getpid(), "crewboard.runner") == [crews.runs(second)[0].pid]
        await wait_for(job_status(second, JobStatus.DONE), what="the spawned run to finish")
    assert forked not in children_running(os.getpid(), "crewboard.runner")


async def test_what_a_runner_prints_on_stderr_is_kept_beside_its_log(
    board, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An interpreter-wide customisation that warns on stderr as it loads, as
    # a site's Python may: the run succeeds, and its words are kept.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\nprint('site: this interpreter is customised', file=sys.stderr)\n"
    )
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    config, home = board()
    job_id = crews.add_job("Say hello.")
    async with supervising(config, forkserver=False):
        await wait_for(job_status(job_id, JobStatus.DONE), what="the job done")
    (run,) = crews.runs(job_id)
    assert run.outcome == RunOutcome.SUCCEEDED
    assert home.run_stderr(run.id).read_text() == "site: this interpreter is customised\n"
