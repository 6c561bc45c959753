"""Accounts and limits on a real board: the claim never starts a disabled
owner's job whatever put it back to ready, a schedule's fire past its
owner's queued-jobs limit makes no crew and says why, tokens stop at their
expiry, the token-expiry migration upgrades an older board, and on
PostgreSQL parallel inserts of one user stop exactly at a count limit."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from crewboard import limits
from crewboard.agents import load_presets
from crewboard.board import db, dispatch, migrations, schedules, users
from crewboard.board.models import Crew, Event, Job, JobStatus, Schedule, User
from crewboard.board.schedules import FireOutcome, ScheduleChanges
from crewboard.clock import utcnow
from crewboard.home import Home
from crewboard.workflows import load_templates, render_crew, shipped_dir
from tests.support import crews


def test_the_claim_passes_over_a_disabled_owners_ready_job(home: Home):
    mine = crews.add_job("Say hello.")
    owner = Job.get_by_id(mine).owner_id
    # A race put it back to ready after its owner was disabled: set both directly.
    User.update(disabled=True).where(User.id == owner).execute()
    assert Job.get_by_id(mine).status == JobStatus.READY
    other = users.create_user("other@example.test", None, now=utcnow())
    theirs = crews.add_job("Say hello.")
    Job.update(owner=other.id).where(Job.id == theirs).execute()

    claim = dispatch.claim_ready_job("sup", home.run_log, now=utcnow())
    assert claim is not None and claim.job_id == theirs
    assert dispatch.claim_ready_job("sup", home.run_log, now=utcnow()) is None
    assert Job.get_by_id(mine).status == JobStatus.READY

    users.enable_user(owner)
    claim = dispatch.claim_ready_job("sup", home.run_log, now=utcnow())
    assert claim is not None and claim.job_id == mine


def test_disabling_blocks_waiting_and_ready_jobs_but_not_running_ones(home: Home):
    ids = crews.add_crew({"a": crews.JobDef(), "b": crews.JobDef(needs=["a"]), "c": crews.JobDef()})
    owner = Job.get_by_id(ids["a"]).owner_id
    running = dispatch.claim_ready_job("sup", home.run_log, now=utcnow())
    assert running is not None
    done = users.disable_user(owner, actor="user:1", now=utcnow())
    assert sorted(done.blocked_job_ids) == sorted(set(ids.values()) - {running.job_id})
    assert Job.get_by_id(running.job_id).status == JobStatus.RUNNING
    for job_id in done.blocked_job_ids:
        job = Job.get_by_id(job_id)
        assert (job.status, job.blocked_reason) == (JobStatus.BLOCKED, users.OWNER_DISABLED)


def test_a_fire_past_the_owners_queued_jobs_limit_makes_no_crew_and_says_why(home, alice):
    presets, _ = load_presets()
    templates = load_templates([shipped_dir()], presets)
    now = utcnow()
    changes = ScheduleChanges(
        name="ask",
        template_id="ask",
        inputs={"question": "Anything?"},
        rule="@hourly",
        timezone="UTC",
        overlap="allow",
    )
    row = schedules.create_schedule(alice.id, changes, now=now)
    crews_before = Crew.select().count()
    for n in range(2):
        fire_at = now + timedelta(hours=n + 1)
        result = schedules.record_schedule_fire(
            row.id,
            fire_at,
            crew=render_crew(templates, "ask", {"question": "Anything?"}),
            due_from=Schedule.get_by_id(row.id).next_run_at,
            next_run_at=fire_at + timedelta(hours=1),
            max_queued=1,
            now=fire_at,
        )
        assert result.outcome is (FireOutcome.SPAWNED if n == 0 else FireOutcome.FAILED)
    assert Crew.select().count() == crews_before + 1
    (failed,) = Event.select().where((Event.schedule == row.id) & (Event.kind == "fire_failed"))
    assert "limit" in failed.message and "CREWBOARD_QUEUED_JOBS_PER_USER" in failed.message


def test_a_token_is_refused_from_its_expiry_on(home: Home):
    user = users.create_user("t@example.test", None, now=utcnow())
    now = utcnow()
    row, secret = users.create_token(user.id, "ci", expires_in_days=1, now=now)
    assert row.expires_at == now + timedelta(days=1)
    assert users.token_principal(secret, now=now + timedelta(hours=23)) is not None
    assert users.token_principal(secret, now=now + timedelta(days=1)) is None
    _, forever = users.create_token(user.id, "forever", now=now)
    assert users.token_principal(forever, now=now + timedelta(days=3650)) is not None


def test_the_token_expiry_migration_upgrades_a_board_made_before_it(home: Home):
    database = db.database.obj
    users.create_token(
        users.create_user("old@example.test", None, now=utcnow()).id, "old", now=utcnow()
    )
    database.execute_sql('ALTER TABLE "api_token" DROP COLUMN "expires_at"')
    database.execute_sql("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    assert migrations.migrate(database) == migrations.SCHEMA_VERSION
    columns = {column.name for column in database.get_columns("api_token")}
    assert "expires_at" in columns
    assert [t.expires_at for t in users.list_tokens(User.get().id)] == [None]


@pytest.mark.postgres
def test_parallel_schedules_on_postgresql_stop_exactly_at_the_limit(pg):
    owner = users.create_user("pg@example.test", None, now=utcnow())
    results: list[str] = []
    lock = threading.Lock()

    def create(n: int) -> None:
        changes = ScheduleChanges(
            name=f"s{n}", template_id="ask", inputs={}, rule="0 9 * * *", timezone="UTC"
        )
        try:
            schedules.create_schedule(owner.id, changes, max_schedules=3, now=utcnow())
            outcome = "made"
        except limits.LimitReached:
            outcome = "refused"
        finally:
            db.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == ["made"] * 3 + ["refused"] * 9
    assert Schedule.select().where(Schedule.owner == owner.id).count() == 3
