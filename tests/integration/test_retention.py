"""Retention on a real board.db and home: what ages out goes with its runs'
files, what is young, running or needed by a job that stays is kept, and
the supervisor and ``crewboard prune`` do it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crewboard.board import db, retention
from crewboard.board.events import EventKind
from crewboard.board.models import ChatSession, Event, Job, JobStatus, Run, RunOutcome
from crewboard.board.retention import RetentionPolicy
from crewboard.bootstrap import open_home
from crewboard.cli import build_parser
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.home import Home
from crewboard.supervisor.retention import run_prune_pass
from tests.conftest import TEST_SETTINGS, make_config
from tests.support import crews
from tests.support.crews import JobDef
from tests.support.supervisor import supervising, wait_for

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board

DAY = timedelta(days=1)


def aged(status: str, days_ago: float) -> dict[str, object]:
    """JobDef.extra for a job in ``status`` whose last change was that long ago."""
    return {"status": status, "updated_at": utcnow() - days_ago * DAY}


def add_run_with_files(home: Home, job_id: int) -> int:
    """A finished run of the job, with a log, an artifact and a workspace."""
    run = Run.create(
        job=job_id,
        outcome=RunOutcome.SUCCEEDED,
        supervisor_id="gone",
        started_at=utcnow() - 40 * DAY,
        ended_at=utcnow() - 40 * DAY,
    )
    home.run_log(run.id).parent.mkdir(parents=True, exist_ok=True)
    home.run_log(run.id).write_text('{"type": "final_result"}\n')
    home.artifact_dir(run.id).mkdir(parents=True)
    (home.artifact_dir(run.id) / "out.md").write_text("# out")
    home.workspace(run.id).mkdir(parents=True)
    (home.workspace(run.id) / "scratch.txt").write_text("x")
    return run.id


def files_of(home: Home, run_id: int) -> list[bool]:
    return [
        home.run_log(run_id).exists(),
        home.artifact_dir(run_id).exists(),
        home.workspace(run_id).exists(),
    ]


def existing(job_ids: list[int]) -> set[int]:
    return {job.id for job in Job.select(Job.id).where(Job.id.in_(job_ids))}


POLICY = RetentionPolicy.from_config(Config(retention_days=30))


async def test_a_pass_prunes_old_finished_jobs_with_their_files(home):
    old = {
        status: crews.add_job(extra=aged(status, 31))
        for status in (JobStatus.DONE, JobStatus.BLOCKED, JobStatus.ARCHIVED)
    }
    young = crews.add_job(extra=aged(JobStatus.DONE, 29))
    running = crews.add_job(extra=aged(JobStatus.RUNNING, 90))
    waiting = crews.add_job(extra=aged(JobStatus.WAITING, 90))
    runs = {job_id: add_run_with_files(home, job_id) for job_id in [*old.values(), young]}

    report = await run_prune_pass(POLICY, home, pause_s=0)

    assert sorted(report.job_ids) == sorted(old.values())
    assert existing([*old.values(), young, running, waiting]) == {young, running, waiting}
    for status, job_id in old.items():
        assert files_of(home, runs[job_id]) == [False, False, False], status
        assert not Run.select().where(Run.job == job_id).exists()
    assert files_of(home, runs[young]) == [True, True, True]
    # The change feed hears of it, as of any deletion.
    deleted = Event.select().where(Event.kind == EventKind.DELETED).get()
    assert deleted.actor == retention.RETENTION
    assert sorted(deleted.data["jobIds"]) == sorted(old.values())


async def test_a_job_stays_while_a_job_that_stays_depends_on_it(home):
    kept = crews.add_crew(
        {
            "parent": JobDef(extra=aged(JobStatus.DONE, 60)),
            "child": JobDef(needs=["parent"], extra=aged(JobStatus.WAITING, 60)),
        }
    )
    running = crews.add_crew(
        {
            "parent": JobDef(extra=aged(JobStatus.DONE, 60)),
            "child": JobDef(needs=["parent"], extra=aged(JobStatus.RUNNING, 60)),
        }
    )
    young_child = crews.add_crew(
        {
            "parent": JobDef(extra=aged(JobStatus.DONE, 60)),
            "child": JobDef(needs=["parent"], extra=aged(JobStatus.DONE, 1)),
        }
    )
    gone = crews.add_crew(
        {
            "a": JobDef(extra=aged(JobStatus.DONE, 60)),
            "b": JobDef(needs=["a"], extra=aged(JobStatus.DONE, 40)),
            "c": JobDef(needs=["b"], extra=aged(JobStatus.BLOCKED, 35)),
        }
    )
    await run_prune_pass(POLICY, home, pause_s=0)
    for crew in (kept, running, young_child):
        assert existing(list(crew.values())) == set(crew.values())
    assert existing(list(gone.values())) == set()


async def test_per_status_days_override_the_default(home):
    blocked = crews.add_job(extra=aged(JobStatus.BLOCKED, 40))
    done = crews.add_job(extra=aged(JobStatus.DONE, 40))
    policy = RetentionPolicy.from_config(Config(retention_days=30, retention_days_blocked=90))
    report = await run_prune_pass(policy, home, pause_s=0)
    assert report.job_ids == [done]
    assert existing([blocked, done]) == {blocked}
    # Only the per-status setting: the other statuses are kept for ever.
    only_done = RetentionPolicy.from_config(Config(retention_days_done=1))
    assert only_done.enabled and only_done.event_cutoff(now=utcnow()) is None
    assert set(only_done.job_cutoffs(now=utcnow())) == {JobStatus.DONE}


async def test_batches_are_small_and_a_pass_takes_them_all(home):
    ids = [crews.add_job(extra=aged(JobStatus.DONE, 31 + i / 100)) for i in range(25)]
    first = retention.prune_jobs(POLICY, now=utcnow(), limit=10)
    assert len(first.jobs) == 10 and first.after is not None
    assert set(first.job_ids) == set(ids[15:])  # the oldest first
    report = await run_prune_pass(POLICY, home, pause_s=0)
    assert len(report.job_ids) == 15
    assert existing(ids) == set()


async def test_chats_untouched_that_long_go_with_their_files(home, alice):
    now = utcnow()

    def chat(name: str, days_ago: float) -> int:
        at = now - days_ago * DAY
        row = ChatSession.create(
            owner=alice.id,
            session_name=name,
            agent="assistant",
            model_spec="offline:scripted",
            created_at=at,
            updated_at=at,
        )
        home.chat_log(row.id).parent.mkdir(parents=True, exist_ok=True)
        home.chat_log(row.id).write_text("{}\n")
        return row.id

    old, recent = chat("old", 31), chat("recent", 2)
    policy = RetentionPolicy.from_config(Config(retention_days=365, retention_days_chat=30))
    report = await run_prune_pass(policy, home, pause_s=0)
    assert report.chat_ids == [old]
    assert not home.chat_log(old).exists() and home.chat_log(recent).exists()
    assert [row.id for row in ChatSession.select()] == [recent]


async def test_old_job_less_events_are_purged_and_job_events_kept(home):
    job_id = crews.add_job(extra=aged(JobStatus.DONE, 1))
    old = utcnow() - 40 * DAY
    Event.create(kind=EventKind.DELETED, actor="user:1", data={}, created_at=old)
    Event.create(kind=EventKind.DELETED, actor="user:1", data={}, created_at=utcnow())
    Event.create(job=job_id, kind=EventKind.COMMENT, actor="user:1", created_at=old)
    report = await run_prune_pass(POLICY, home, pause_s=0)
    assert report.events == 1
    assert Event.select().count() == 2
    assert existing([job_id]) == {job_id}


async def test_the_supervisor_prunes_on_its_own(tmp_path):
    config = make_config(tmp_path / "home", retention_days=30.0, retention_every_s=0.2)
    home = open_home(config)
    try:
        old = crews.add_job(extra=aged(JobStatus.DONE, 31))
        run_id = add_run_with_files(home, old)
        async with supervising(config, forkserver=False):
            await wait_for(lambda: not existing([old]), 10, "the old job to be pruned")
            # Later passes keep going (and find nothing).
            newer = await db.call(crews.add_job, extra=aged(JobStatus.ARCHIVED, 45))
            await wait_for(lambda: not existing([newer]), 10, "the next pass")
        assert files_of(home, run_id) == [False, False, False]
    finally:
        db.close()


def run_cli(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return args.fn(args)


def test_prune_dry_run_shows_what_would_go_and_prune_does_it(config, home, capsys, monkeypatch):
    for key, value in TEST_SETTINGS.items():
        monkeypatch.setenv(key, value)
    if config.database_url:  # the command's board is the test's
        monkeypatch.setenv("CREWBOARD_DATABASE_URL", config.database_url)
    old = [crews.add_job(extra=aged(JobStatus.DONE, 31)) for _ in range(3)]
    young = crews.add_job(extra=aged(JobStatus.DONE, 1))
    add_run_with_files(home, old[0])

    assert run_cli("prune", "--home", str(config.home), "--dry-run") == 0
    assert "Retention is off" in capsys.readouterr().out

    monkeypatch.setenv("CREWBOARD_RETENTION_DAYS", "30")
    assert run_cli("prune", "--home", str(config.home), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "Would prune 3 job(s) (done 3) with 1 run(s)" in out
    assert "job ids: " + " ".join(map(str, old)) in out
    assert existing([*old, young]) == {*old, young}

    assert run_cli("prune", "--home", str(config.home)) == 0
    assert "Pruned 3 job(s) with 1 run(s)" in capsys.readouterr().out
    assert existing([*old, young]) == {young}

    assert run_cli("prune", "--home", str(config.home), "--days", "0") == 0
    assert existing([young]) == set()


@pytest.mark.parametrize(("raw", "expected"), [("30", 30.0), ("0.5", 0.5), ("", None), ("0", 0.0)])
def test_retention_settings_come_from_the_environment(tmp_path, raw, expected):
    config = Config.load(tmp_path, environ={"CREWBOARD_RETENTION_DAYS_BLOCKED": raw})
    assert config.retention_days_blocked == expected
    assert config.retention_days is None
    policy = RetentionPolicy.from_config(config)
    assert policy.enabled == (expected is not None)


def test_retention_rejects_nonsense(tmp_path):
    from crewboard.errors import ConfigError

    with pytest.raises(ConfigError, match="CREWBOARD_RETENTION_DAYS"):
        Config.load(tmp_path, environ={"CREWBOARD_RETENTION_DAYS": "-1"})
