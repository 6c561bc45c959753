"""The scheduler's transition, ``record_schedule_fire``, against a real
board.db with the clock passed in: a fire spawns one crew linked to its
schedule, a fire time already dealt with is refused by the unique key (even
from another thread at the same moment), a schedule changed since it was read
is left alone, missed fires coalesce with an event that counts them, and
overlap skip holds a fire while an earlier crew is active."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from crewboard.agents import load_presets
from crewboard.board import db
from crewboard.board import schedules as board_schedules
from crewboard.board.models import Crew, Event, Job, JobStatus, Schedule, ScheduleFire
from crewboard.board.schedules import FireOutcome
from crewboard.workflows import load_templates, shipped_dir

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def templates():
    presets, _ = load_presets()
    return load_templates([shipped_dir()], presets)


@pytest.fixture
def schedule(home, alice, templates) -> Schedule:
    changes = board_schedules.check_changes(
        {
            "name": "Hourly ask",
            "templateId": "ask",
            "inputs": {"question": "Anything new?"},
            "rule": "0 * * * *",
            "timezone": "Europe/Paris",
        },
        templates,
    )
    return board_schedules.create_schedule(alice.id, changes, NOW - timedelta(minutes=30))


def fire(schedule_id, templates, fire_at, *, due_from=None, missed=1, now=None):
    return board_schedules.record_schedule_fire(
        schedule_id,
        fire_at,
        now or fire_at + timedelta(milliseconds=200),
        templates=templates,
        due_from=due_from or fire_at,
        next_run_at=fire_at + timedelta(hours=1),
        missed=missed,
    )


def events(schedule_id: int, kind: str) -> list[Event]:
    return list(
        Event.select()
        .where((Event.schedule == schedule_id) & (Event.kind == kind))
        .order_by(Event.id)
    )


def test_a_new_schedule_fires_next_at_its_rules_first_time(schedule):
    assert schedule.next_run_at == NOW
    assert schedule.enabled and schedule.last_run_at is None


def test_a_fire_spawns_one_crew_linked_to_the_schedule(schedule, templates):
    result = fire(schedule.id, templates, NOW)
    assert result.outcome is FireOutcome.SPAWNED
    crew = Crew.get_by_id(result.crew_id)
    assert crew.schedule_id == schedule.id and crew.owner_id == schedule.owner_id
    assert crew.title == "Hourly ask"
    jobs = list(Job.select().where(Job.crew == crew.id))
    assert [j.id for j in jobs] == list(result.job_ids)
    assert all(j.schedule_id == schedule.id and j.status == JobStatus.READY for j in jobs)
    assert "Anything new?" in jobs[0].prompt
    row = Schedule.get_by_id(schedule.id)
    assert (row.next_run_at, row.last_run_at) == (NOW + timedelta(hours=1), NOW)
    (record,) = board_schedules.fires_of(schedule.id)
    assert (record.fire_at, record.outcome, record.crew_id) == (NOW, "spawned", crew.id)
    (fired,) = events(schedule.id, "fired")
    assert fired.actor == "scheduler" and fired.data["crewId"] == crew.id
    assert fired.owner_id == schedule.owner_id  # so the owner's change feed shows it
    assert not events(schedule.id, "coalesced")


def test_a_fire_time_dealt_with_once_is_refused_the_second_time(schedule, templates):
    assert fire(schedule.id, templates, NOW).outcome is FireOutcome.SPAWNED
    # A board that points back at the same fire time (a restored copy, a
    # clock that stepped back) must not spawn it again.
    Schedule.update(next_run_at=NOW).where(Schedule.id == schedule.id).execute()
    again = fire(schedule.id, templates, NOW)
    assert again.outcome is FireOutcome.DUPLICATE
    assert Crew.select().count() == 1
    assert len(board_schedules.fires_of(schedule.id)) == 1
    assert len(events(schedule.id, "fired")) == 1
    # ...and the schedule still moves on, so it is not retried forever.
    assert Schedule.get_by_id(schedule.id).next_run_at == NOW + timedelta(hours=1)


def test_two_writers_on_the_same_fire_make_one_crew(schedule, templates):
    results = []
    barrier = threading.Barrier(4)

    def race() -> None:
        try:
            barrier.wait()
            results.append(fire(schedule.id, templates, NOW).outcome)
        finally:
            db.close()  # this thread's connection

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == sorted([FireOutcome.SPAWNED] + [FireOutcome.STALE] * 3)
    assert Crew.select().count() == 1


@pytest.mark.parametrize(
    "change",
    [
        {"enabled": False, "next_run_at": None},  # paused meanwhile
        {"next_run_at": NOW + timedelta(hours=5)},  # edited meanwhile
    ],
)
def test_a_schedule_changed_since_it_was_read_is_left_alone(schedule, templates, change):
    Schedule.update(**change).where(Schedule.id == schedule.id).execute()
    assert fire(schedule.id, templates, NOW).outcome is FireOutcome.STALE
    assert Crew.select().count() == 0 and ScheduleFire.select().count() == 0
    row = Schedule.get_by_id(schedule.id)
    assert row.next_run_at == change["next_run_at"] and row.last_run_at is None


def test_missed_fires_coalesce_into_one_crew_with_an_event_counting_them(schedule, templates):
    latest = NOW + timedelta(hours=4)
    result = fire(schedule.id, templates, latest, due_from=NOW, missed=5)
    assert result.outcome is FireOutcome.SPAWNED
    assert Crew.select().count() == 1
    (coalesced,) = events(schedule.id, "coalesced")
    assert coalesced.data["missed"] == 5
    assert coalesced.data["firstFireAt"] == "2026-03-02T09:00:00.000Z"
    assert coalesced.data["fireAt"] == "2026-03-02T13:00:00.000Z"
    assert "5 fire times" in coalesced.message
    (record,) = board_schedules.fires_of(schedule.id)
    assert (record.fire_at, record.missed) == (latest, 5)


def test_overlap_skip_holds_fires_while_a_crew_is_active(schedule, templates):
    first = fire(schedule.id, templates, NOW)
    second_time = NOW + timedelta(hours=1)
    skipped = fire(schedule.id, templates, second_time)
    assert skipped.outcome is FireOutcome.SKIPPED
    assert Crew.select().count() == 1
    (event,) = events(schedule.id, "skipped")
    assert event.data["activeJobs"] == 1 and "overlap" in event.message
    assert board_schedules.fires_of(schedule.id)[-1].outcome == "skipped"
    assert Schedule.get_by_id(schedule.id).next_run_at == second_time + timedelta(hours=1)

    # Once the crew is done (or blocked, needing a person), fires go on.
    Job.update(status=JobStatus.DONE).where(Job.id.in_(first.job_ids)).execute()
    third = fire(schedule.id, templates, second_time + timedelta(hours=1))
    assert third.outcome is FireOutcome.SPAWNED


@pytest.mark.parametrize("status", [JobStatus.WAITING, JobStatus.READY, JobStatus.RUNNING])
def test_each_active_status_holds_an_overlap_skip(schedule, templates, status):
    first = fire(schedule.id, templates, NOW)
    Job.update(status=status).where(Job.id.in_(first.job_ids)).execute()
    assert fire(schedule.id, templates, NOW + timedelta(hours=1)).outcome is FireOutcome.SKIPPED


def test_overlap_allow_always_fires(schedule, templates):
    Schedule.update(overlap="allow").where(Schedule.id == schedule.id).execute()
    fire(schedule.id, templates, NOW)
    result = fire(schedule.id, templates, NOW + timedelta(hours=1))
    assert result.outcome is FireOutcome.SPAWNED
    assert Crew.select().count() == 2


def test_a_fire_whose_template_no_longer_takes_the_inputs_is_recorded_as_failed(
    schedule, templates
):
    Schedule.update(inputs={"question": 42}).where(Schedule.id == schedule.id).execute()
    result = fire(schedule.id, templates, NOW)
    assert result.outcome is FireOutcome.FAILED and "inputs.question" in result.detail
    assert Crew.select().count() == 0
    (event,) = events(schedule.id, "fire_failed")
    assert "inputs.question" in event.data["reason"]
    assert Schedule.get_by_id(schedule.id).next_run_at == NOW + timedelta(hours=1)


def test_the_due_list_and_next_fire_skip_paused_schedules_and_disabled_accounts(schedule, alice):
    from crewboard.board.models import User

    assert [d.id for d in board_schedules.due_schedules(NOW)] == [schedule.id]
    assert board_schedules.due_schedules(NOW - timedelta(seconds=1)) == []
    assert board_schedules.next_fire_at() == NOW
    User.update(disabled=True).where(User.id == alice.id).execute()
    assert board_schedules.due_schedules(NOW) == [] and board_schedules.next_fire_at() is None
    User.update(disabled=False).where(User.id == alice.id).execute()
    board_schedules.disable_schedule(schedule.id, alice.id, NOW)
    assert board_schedules.due_schedules(NOW) == [] and board_schedules.next_fire_at() is None


def test_a_schedule_whose_rule_cannot_be_read_is_paused_with_the_reason(schedule):
    assert board_schedules.disable_unreadable(schedule.id, NOW, "invalid schedule rule: L", now=NOW)
    row = Schedule.get_by_id(schedule.id)
    assert (row.enabled, row.next_run_at) == (False, None)
    assert "invalid schedule rule" in events(schedule.id, "disabled")[0].data["reason"]
