"""The scheduler inside a real supervisor, on a real board.db, in real time:
a schedule fires on time and its crew runs, run-now spawns at once, a paused
schedule stays quiet, a restart never fires a fire time twice, fires missed
while the supervisor was down coalesce into one crew, and two supervisors
racing on the same fires make one crew per fire.

Rules fire on minutes, which is too slow for a test: the tests move a
schedule's ``next_run_at`` to a moment from now on the board, which the
scheduler honours like any fire time."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from crewboard.board import db
from crewboard.board import schedules as board_schedules
from crewboard.board.db import write
from crewboard.board.models import Crew, Event, Job, JobStatus, Schedule, ScheduleFire
from crewboard.board.schedule_views import fires_of
from crewboard.board.schedules import ScheduleChanges
from crewboard.clock import utcnow
from crewboard.wakeup import wake_supervisor
from tests.support.board_jobs import signed_in_client
from tests.support.procs import Proc
from tests.support.supervisor import supervising, supervisor_process, wait_for
from tests.support.waits import wait_until

NEW_YEAR = "0 0 1 1 *"  # fires far from any test run, unless told otherwise


def make_schedule(owner_id: int, rule: str = NEW_YEAR, overlap: str = "allow") -> int:
    changes = ScheduleChanges(
        name="Nightly question",
        template_id="ask",
        inputs={"question": "What is two plus two?"},
        rule=rule,
        timezone="UTC",
        overlap=overlap,
    )
    return board_schedules.create_schedule(owner_id, changes, now=utcnow()).id


@write
def due_in(schedule_id: int, seconds: float) -> datetime:
    """Move the schedule's next fire to ``seconds`` from now."""
    at = utcnow() + timedelta(seconds=seconds)
    Schedule.update(next_run_at=at).where(Schedule.id == schedule_id).execute()
    return at


@write
def due_at(schedule_id: int, at: datetime) -> None:
    Schedule.update(next_run_at=at).where(Schedule.id == schedule_id).execute()


def schedule_row(schedule_id: int) -> Schedule:
    return Schedule.get_by_id(schedule_id)


def crews_of(schedule_id: int) -> list[Crew]:
    return list(Crew.select().where(Crew.schedule == schedule_id).order_by(Crew.id))


def jobs_done(schedule_id: int) -> bool:
    jobs = list(Job.select().where(Job.schedule == schedule_id))
    return bool(jobs) and all(job.status == JobStatus.DONE for job in jobs)


def started(proc: Proc) -> None:
    proc.wait_for_line(lambda line: "ready" in line and "supervisor" in line)


async def test_a_schedule_fires_on_time_and_its_crew_runs(config, home, alice):
    schedule_id = await db.call(make_schedule, alice.id)
    async with supervising(config):
        fire_at = await db.call(due_in, schedule_id, 0.5)
        wake_supervisor(home)  # as the web process does after an edit
        (crew,) = await wait_for(lambda: crews_of(schedule_id), 10, "the fire's crew")
        assert timedelta(0) <= crew.created_at - fire_at < timedelta(seconds=1)
        await wait_for(lambda: jobs_done(schedule_id), 30, "the crew's job to run")
    row = await db.call(schedule_row, schedule_id)
    assert row.last_run_at == fire_at
    assert row.next_run_at == datetime(fire_at.year + 1, 1, 1, tzinfo=fire_at.tzinfo)
    (job,) = await db.call(lambda: list(Job.select().where(Job.crew == crew.id)))
    assert job.schedule_id == schedule_id and job.result


async def test_run_now_spawns_at_once_and_the_supervisor_runs_it(config, server, alice):
    async with supervising(config), signed_in_client(server, alice) as client:
        created = await client.post(
            "/api/schedules",
            json={
                "name": "On demand",
                "templateId": "ask",
                "inputs": {"question": "Ready?"},
                "rule": NEW_YEAR,
                "timezone": "Europe/Berlin",
                "enabled": False,
            },
        )
        schedule = created.json()
        response = await client.post(f"/api/schedules/{schedule['id']}/run-now")
        assert response.status_code == 201, response.text
        await wait_for(lambda: jobs_done(schedule["id"]), 30, "the run-now job to run")
        after = (await client.get(f"/api/schedules/{schedule['id']}")).json()
        assert (after["enabled"], after["nextRunAt"]) == (False, None)
        listed = (await client.get(f"/api/schedules/{schedule['id']}/jobs")).json()["jobs"]
        assert [j["id"] for j in listed] == response.json()["jobIds"]
        assert listed[0]["status"] == "done"


async def test_a_disabled_schedule_does_not_fire(config, alice):
    paused = await db.call(make_schedule, alice.id)
    control = await db.call(make_schedule, alice.id)
    async with supervising(config):
        await db.call(due_in, paused, 0.5)
        await db.call(board_schedules.disable_schedule, paused, alice.id, now=utcnow())
        await db.call(due_in, control, 0.8)
        # The control firing shows the scheduler has gone past the paused one's time.
        await wait_for(lambda: crews_of(control), 10, "the control schedule to fire")
        assert await db.call(crews_of, paused) == []
        assert await db.call(fires_of, paused) == []


async def test_a_restart_never_fires_a_fire_time_twice(config, alice):
    schedule_id = await db.call(make_schedule, alice.id)
    async with supervising(config):
        fire_at = await db.call(due_in, schedule_id, 0.3)
        await wait_for(lambda: crews_of(schedule_id), 10, "the fire's crew")
    # Restart with a board that points back at the fire already made (as if
    # the supervisor had died before moving the schedule on).
    await db.call(due_at, schedule_id, fire_at)
    control = await db.call(make_schedule, alice.id)
    async with supervising(config):
        await db.call(due_in, control, 0.5)
        await wait_for(lambda: crews_of(control), 10, "the control schedule to fire")
        await wait_for(
            lambda: schedule_row(schedule_id).next_run_at != fire_at, 10, "the schedule to move on"
        )
    assert len(await db.call(crews_of, schedule_id)) == 1
    (fire,) = await db.call(fires_of, schedule_id)
    assert fire.fire_at == fire_at


async def test_fires_missed_while_the_supervisor_was_down_make_one_crew(config, alice):
    schedule_id = await db.call(make_schedule, alice.id, "0 * * * *")
    now = utcnow()
    due_from = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    await db.call(due_at, schedule_id, due_from)  # three hours of downtime
    async with supervising(config):
        await wait_for(lambda: crews_of(schedule_id), 10, "the coalesced crew")
    assert len(await db.call(crews_of, schedule_id)) == 1
    (fire,) = await db.call(fires_of, schedule_id)
    hours = round((fire.fire_at - due_from).total_seconds() / 3600)
    assert fire.missed == hours + 1 >= 4  # 3 hours back, on the hour, through the current one
    (event,) = await db.call(
        lambda: list(
            Event.select().where((Event.schedule == schedule_id) & (Event.kind == "coalesced"))
        )
    )
    assert event.data["missed"] == fire.missed
    row = await db.call(schedule_row, schedule_id)
    assert row.next_run_at == fire.fire_at + timedelta(hours=1) > now


def test_two_supervisors_racing_on_the_same_fires_make_one_crew_each(home, alice):
    schedule_ids = [make_schedule(alice.id) for _ in range(8)]
    with supervisor_process(home.root) as one:
        started(one)
        with supervisor_process(home.root) as two:
            started(two)
            at = utcnow() + timedelta(seconds=1)
            for schedule_id in schedule_ids:
                due_at(schedule_id, at)
            wait_until(lambda: all(crews_of(s) for s in schedule_ids), 15, "every schedule to fire")
            # Both schedulers poll every 0.2 s: a second past the fire time, the
            # loser has had several rounds in which to make a second crew.
            wait_until(lambda: utcnow() > at + timedelta(seconds=1), 5, "both to have looked")
            two.stop()
            one.stop()
    for schedule_id in schedule_ids:
        assert len(crews_of(schedule_id)) == 1, schedule_id
        assert len(fires_of(schedule_id)) == 1
    assert ScheduleFire.select().count() == len(schedule_ids)
    logs = one.output() + "\n" + two.output()
    assert "could not fire schedule" not in logs and "scheduler round failed" not in logs, logs


@write
def make_poison_schedule(owner_id: int) -> int:
    """A schedule whose inputs hold a lone surrogate, stored as the web took
    them before it checked strings: no crew can ever be written from it."""
    changes = ScheduleChanges(
        name="Poison",
        template_id="ask",
        inputs={"question": "why \ud800?"},
        rule=NEW_YEAR,
        timezone="UTC",
        overlap="allow",
    )
    return board_schedules.create_schedule(owner_id, changes, now=utcnow()).id


@pytest.mark.sqlite_only("PostgreSQL refuses to store the lone surrogate this old schedule holds")
async def test_a_schedule_whose_inputs_cannot_spawn_is_paused_with_the_reason(
    config, server, alice, caplog
):
    poison = await db.call(make_poison_schedule, alice.id)
    control = await db.call(make_schedule, alice.id)
    async with supervising(config):
        await db.call(due_in, poison, 0.3)
        await db.call(due_in, control, 0.6)
        await wait_for(lambda: not schedule_row(poison).enabled, 10, "the poison to be paused")
        await wait_for(lambda: crews_of(control), 10, "the control schedule to fire")
    assert await db.call(crews_of, poison) == []
    (event,) = await db.call(
        lambda: list(Event.select().where((Event.schedule == poison) & (Event.kind == "disabled")))
    )
    assert "inputs.question" in event.message and "unpaired surrogate" in event.message
    assert event.actor == "scheduler"
    # Said once, as one line: no traceback, no repeat every poll.
    said = [r for r in caplog.records if r.name == "crewboard.supervisor.scheduler"]
    assert [r.levelname for r in said if str(poison) in r.getMessage()] == ["WARNING"]
    assert not any(r.exc_info for r in said)
    async with signed_in_client(server, alice) as client:
        shown = (await client.get(f"/api/schedules/{poison}")).json()
        assert (shown["enabled"], shown["nextRunAt"]) == (False, None)
        run_now = await client.post(f"/api/schedules/{poison}/run-now")
        assert run_now.status_code == 422, run_now.text
        assert "inputs.question" in run_now.json()["error"]["details"]["fields"]
