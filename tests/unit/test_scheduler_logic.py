"""The scheduler as pure logic in virtual time: when it fires (to the
second, through DST changes in New York and London), how it coalesces fires
missed while it was down, when overlap skips a fire, how long it waits and
what wakes it. The board is replaced by an in-memory store with the same
rules as ``record_schedule_fire`` (the real transition is tested against a
real board in ``tests/integration``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import trio

from crewboard import cron
from crewboard.board.schedule_views import DueSchedule
from crewboard.board.schedules import FireOutcome, FireResult
from crewboard.config import Config
from crewboard.supervisor.scheduler import (
    PlannedFire,
    Unreadable,
    plan_fire,
    serve_scheduler,
)
from crewboard.supervisor.wake import Wakeup
from crewboard.workflows import Template

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# --- pure decisions -----------------------------------------------------------


def test_a_fire_on_time_is_one_fire_and_the_next_is_the_following_one():
    due = DueSchedule(1, "*/5 * * * *", "UTC", T0)
    assert plan_fire(due, T0 + timedelta(seconds=0.2)) == PlannedFire(
        1, T0, 1, T0, T0 + timedelta(minutes=5)
    )


def test_fires_missed_while_down_coalesce_into_the_latest():
    due = DueSchedule(1, "*/5 * * * *", "UTC", T0)
    planned = plan_fire(due, T0 + timedelta(minutes=47))
    assert planned == PlannedFire(1, T0 + timedelta(minutes=45), 10, T0, T0 + timedelta(minutes=50))


def test_a_next_fire_set_off_the_rule_by_hand_still_fires():
    off_rule = T0 + timedelta(seconds=7)
    due = DueSchedule(1, "0 * * * *", "UTC", off_rule)
    assert plan_fire(due, off_rule + timedelta(seconds=0.1)) == PlannedFire(
        1, off_rule, 1, off_rule, T0 + timedelta(hours=1)
    )
    # ...and counts among the fires it coalesces with.
    later = plan_fire(due, T0 + timedelta(hours=2, minutes=1))
    assert later == PlannedFire(1, T0 + timedelta(hours=2), 3, off_rule, T0 + timedelta(hours=3))


def test_nothing_is_due_before_the_fire_time():
    due = DueSchedule(1, "0 * * * *", "UTC", T0)
    assert plan_fire(due, T0 - timedelta(milliseconds=1)) is None


def test_a_rule_that_can_no_longer_be_read_is_reported_not_raised():
    planned = plan_fire(DueSchedule(7, "0 0 L * *", "UTC", T0), T0)
    assert isinstance(planned, Unreadable) and planned.schedule_id == 7
    assert "rule" in planned.reason
    assert isinstance(plan_fire(DueSchedule(8, "@daily", "Mars/Olympus", T0), T0), Unreadable)


@pytest.mark.parametrize(
    ("overlap", "active", "skipped"),
    [
        ("skip", 0, False),
        ("skip", 1, True),
        ("skip", 5, True),
        ("allow", 0, False),
        ("allow", 3, False),
    ],
)
def test_overlap_skip_skips_only_while_a_crew_is_active(overlap, active, skipped):
    assert cron.should_skip_for_overlap(overlap, active) is skipped


# --- the loop, in virtual time ------------------------------------------------


@dataclass
class Row:
    rule: str
    timezone: str
    next_run_at: datetime | None
    overlap: str = "skip"
    enabled: bool = True


@dataclass
class Spawn:
    schedule_id: int
    fire_at: datetime
    spawned_at: datetime
    missed: int


@dataclass
class MemoryStore:
    """The board as the scheduler sees it, with ``record_schedule_fire``'s
    rules: a guard on the next fire time read, one outcome per fire time,
    overlap skip while the schedule has an active crew."""

    clock: object
    rows: dict[int, Row] = field(default_factory=dict)
    fires: dict[tuple[int, datetime], FireOutcome] = field(default_factory=dict)
    spawns: list[Spawn] = field(default_factory=list)
    active: dict[int, int] = field(default_factory=dict)  # schedule id -> active jobs
    broken: list[int] = field(default_factory=list)
    failing: set[int] = field(default_factory=set)  # a passing trouble: tried again
    unspawnable: set[int] = field(default_factory=set)  # fails the same way every time
    rounds: int = 0

    def add(self, schedule_id: int, rule: str, timezone: str, now: datetime, **kw: object) -> None:
        self.rows[schedule_id] = Row(rule, timezone, cron.next_fire(rule, timezone, now), **kw)  # type: ignore[arg-type]

    async def due(self, now: datetime) -> list[DueSchedule]:
        self.rounds += 1
        await trio.lowlevel.checkpoint()
        return [
            DueSchedule(sid, r.rule, r.timezone, r.next_run_at)
            for sid, r in sorted(self.rows.items())
            if r.enabled and r.next_run_at is not None and r.next_run_at <= now
        ]

    async def next_fire_at(self) -> datetime | None:
        times = [r.next_run_at for r in self.rows.values() if r.enabled and r.next_run_at]
        return min(times, default=None)

    async def fire(
        self, fire: PlannedFire, now: datetime, templates: Mapping[str, Template]
    ) -> FireResult:
        await trio.lowlevel.checkpoint()
        if fire.schedule_id in self.failing:
            raise sqlite3.OperationalError("database is locked")
        if fire.schedule_id in self.unspawnable:
            raise ValueError("the stored inputs make no crew")
        row = self.rows.get(fire.schedule_id)
        if row is None or not row.enabled or row.next_run_at != fire.due_from:
            return FireResult(FireOutcome.STALE)
        row.next_run_at = fire.next_run_at
        key = (fire.schedule_id, fire.fire_at)
        if key in self.fires:
            return FireResult(FireOutcome.DUPLICATE)
        if cron.should_skip_for_overlap(row.overlap, self.active.get(fire.schedule_id, 0)):
            self.fires[key] = FireOutcome.SKIPPED
            return FireResult(FireOutcome.SKIPPED)
        self.fires[key] = FireOutcome.SPAWNED
        self.spawns.append(Spawn(fire.schedule_id, fire.fire_at, now, fire.missed))
        return FireResult(FireOutcome.SPAWNED, crew_id=len(self.spawns))

    async def disable_unreadable(self, broken: Unreadable) -> None:
        self.broken.append(broken.schedule_id)
        self.rows[broken.schedule_id].enabled = False

    async def templates(self) -> Mapping[str, Template]:
        return {}


class VirtualClock:
    """Wall time that follows trio's (virtual) clock from ``start``."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.base = trio.current_time()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=trio.current_time() - self.base)


async def run_scheduler(
    store: MemoryStore,
    wakeup: Wakeup,
    seconds: float,
    *,
    poll_s: float = 1.0,
    clock: VirtualClock,
) -> None:
    """Run the scheduler for ``seconds`` of virtual time."""
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_scheduler(
                Config(poll_s=poll_s), wakeup, clock=clock, store=store, task_status=task_status
            )
        )
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()


async def test_an_every_minute_schedule_fires_at_each_minute_on_time(autojump_clock):
    clock = VirtualClock(T0 + timedelta(seconds=10))
    store = MemoryStore(clock)
    store.add(1, "* * * * *", "UTC", clock())
    await run_scheduler(store, Wakeup(), 5 * 60, clock=clock)
    assert [s.fire_at for s in store.spawns] == [T0 + timedelta(minutes=m) for m in range(1, 6)]
    for spawn in store.spawns:
        assert timedelta(0) <= spawn.spawned_at - spawn.fire_at < timedelta(seconds=1)
        assert spawn.missed == 1
    # It waited for each fire rather than spinning: about one round a poll.
    assert store.rounds <= 5 * 60 + 20


async def test_a_new_schedule_fires_at_once_when_the_scheduler_is_woken(autojump_clock):
    clock = VirtualClock(T0)
    store = MemoryStore(clock)
    wakeup = Wakeup()
    long_poll_s = 60.0

    async def add_then_wake() -> None:
        await trio.sleep(5)
        store.rows[1] = Row("* * * * *", "UTC", clock() + timedelta(seconds=0.5))
        wakeup.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(add_then_wake)
        await run_scheduler(store, wakeup, 10, poll_s=long_poll_s, clock=clock)
    assert len(store.spawns) == 1
    assert store.spawns[0].spawned_at - store.spawns[0].fire_at < timedelta(seconds=0.1)
    assert store.spawns[0].spawned_at < T0 + timedelta(seconds=6)


async def test_without_a_wake_up_a_change_is_seen_within_a_poll(autojump_clock):
    clock = VirtualClock(T0)
    store = MemoryStore(clock)

    async def add_quietly() -> None:
        await trio.sleep(5)
        store.rows[1] = Row("* * * * *", "UTC", clock() + timedelta(seconds=0.5))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(add_quietly)
        await run_scheduler(store, Wakeup(), 10, poll_s=2.0, clock=clock)
    assert len(store.spawns) == 1
    assert store.spawns[0].spawned_at - store.spawns[0].fire_at < timedelta(seconds=2)


async def test_each_wake_up_runs_one_round_and_a_spawn_tells_the_dispatcher(autojump_clock):
    """Woken, the scheduler looks at the board once, not in a loop, and a crew
    it spawns nudges the dispatcher through ``on_spawned``."""
    clock = VirtualClock(T0)
    store = MemoryStore(clock)
    wakeup = Wakeup()
    dispatcher_nudges = 0

    def nudge_dispatcher() -> None:
        nonlocal dispatcher_nudges
        dispatcher_nudges += 1

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_scheduler(
                Config(poll_s=30.0),
                wakeup,
                on_spawned=nudge_dispatcher,
                clock=clock,
                store=store,
                task_status=task_status,
            )
        )
        await trio.sleep(1)
        rounds = store.rounds
        wakeup.set()
        await trio.sleep(1)
        assert store.rounds == rounds + 1
        assert not wakeup.is_set()
        store.rows[1] = Row("* * * * *", "UTC", clock() - timedelta(seconds=1))
        wakeup.set()
        await trio.sleep(0.2)
        assert store.rounds == rounds + 2
        assert len(store.spawns) == 1 and dispatcher_nudges == 1
        nursery.cancel_scope.cancel()


async def test_fires_missed_while_down_make_one_crew_that_counts_them(autojump_clock):
    # The supervisor was down from 09:00 to 12:00 with an every-15-minutes rule.
    clock = VirtualClock(T0)
    store = MemoryStore(clock)
    store.rows[1] = Row("*/15 * * * *", "UTC", T0 - timedelta(hours=3))
    await run_scheduler(store, Wakeup(), 20 * 60, clock=clock)
    first, *rest = store.spawns
    assert (first.fire_at, first.missed) == (T0, 13)  # 09:00, 09:15, ... 12:00
    assert [(s.fire_at, s.missed) for s in rest] == [(T0 + timedelta(minutes=15), 1)]


async def test_a_restart_does_not_fire_a_fire_time_twice(autojump_clock):
    clock = VirtualClock(T0 + timedelta(seconds=30))
    store = MemoryStore(clock)
    store.add(1, "* * * * *", "UTC", clock())
    await run_scheduler(store, Wakeup(), 90, clock=clock)
    assert [s.fire_at for s in store.spawns] == [T0 + timedelta(minutes=1)]
    # A stale copy of the board (say, restored from before the fire) points
    # back at the fire time already dealt with: the fire record refuses it.
    store.rows[1].next_run_at = T0 + timedelta(minutes=1)
    await run_scheduler(store, Wakeup(), 45, clock=clock)
    assert [s.fire_at for s in store.spawns] == [
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=2),
    ]


async def test_overlap_skip_skips_while_a_crew_is_active_and_allow_fires(autojump_clock):
    clock = VirtualClock(T0 + timedelta(seconds=1))
    store = MemoryStore(clock)
    store.add(1, "* * * * *", "UTC", clock(), overlap="skip")
    store.add(2, "* * * * *", "UTC", clock(), overlap="allow")
    store.active = {1: 1, 2: 1}
    await run_scheduler(store, Wakeup(), 2 * 60, clock=clock)
    store.active = {}
    await run_scheduler(store, Wakeup(), 60, clock=clock)
    minute = [T0 + timedelta(minutes=m) for m in (1, 2, 3)]
    assert [s.fire_at for s in store.spawns if s.schedule_id == 1] == minute[2:]
    assert [s.fire_at for s in store.spawns if s.schedule_id == 2] == minute
    assert [store.fires[(1, t)] for t in minute] == [
        FireOutcome.SKIPPED,
        FireOutcome.SKIPPED,
        FireOutcome.SPAWNED,
    ]


async def test_one_bad_schedule_does_not_stop_the_others(autojump_clock):
    clock = VirtualClock(T0 + timedelta(seconds=1))
    store = MemoryStore(clock)
    store.add(1, "* * * * *", "UTC", clock())
    store.add(2, "* * * * *", "UTC", clock())
    store.rows[3] = Row("0 0 L * *", "UTC", T0)  # stored before rules were checked
    store.failing = {2}
    await run_scheduler(store, Wakeup(), 2 * 60 + 5, clock=clock)
    assert [s.fire_at for s in store.spawns] == [T0 + timedelta(minutes=m) for m in (1, 2)]
    assert store.broken == [3]
    # The board's passing trouble leaves the schedule on, to be tried again.
    assert store.rows[2].enabled


async def test_a_schedule_that_fails_the_same_way_every_time_is_paused_once(autojump_clock, caplog):
    clock = VirtualClock(T0 + timedelta(seconds=1))
    store = MemoryStore(clock)
    store.add(1, "* * * * *", "UTC", clock())
    store.add(2, "* * * * *", "UTC", clock())
    store.unspawnable = {2}
    await run_scheduler(store, Wakeup(), 5 * 60 + 5, clock=clock)
    assert store.broken == [2] and not store.rows[2].enabled
    assert len(store.spawns) == 5
    # One report of it in the log, not one a poll.
    paused = [r for r in caplog.records if "paused" in r.getMessage()]
    assert len(paused) == 1


# --- DST, as the scheduler lives through it -----------------------------------


async def fires_between(rule: str, zone: str, start: str, end: str) -> list[str]:
    """The fire times (UTC) the scheduler acts on from ``start`` to ``end``."""
    clock = VirtualClock(at(start))
    store = MemoryStore(clock)
    store.add(1, rule, zone, clock())
    seconds = (at(end) - at(start)).total_seconds()
    await run_scheduler(store, Wakeup(), seconds, poll_s=3600.0, clock=clock)
    for spawn in store.spawns:
        assert spawn.missed == 1
        assert spawn.spawned_at - spawn.fire_at < timedelta(seconds=1)
    return [s.fire_at.strftime("%Y-%m-%dT%H:%MZ") for s in store.spawns]


async def test_new_york_spring_forward_fires_a_skipped_time_once_shifted(autojump_clock):
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist that day.
    fired = await fires_between(
        "30 2 * * *", "America/New_York", "2026-03-07T00:00Z", "2026-03-10T00:00Z"
    )
    assert fired == [
        "2026-03-07T07:30Z",  # 02:30 EST
        "2026-03-08T07:30Z",  # the skipped 02:30, at 03:30 EDT
        "2026-03-09T06:30Z",  # 02:30 EDT
    ]


async def test_new_york_fall_back_fires_a_fixed_hour_once(autojump_clock):
    # 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    fired = await fires_between(
        "30 1 * * *", "America/New_York", "2026-10-31T00:00Z", "2026-11-03T00:00Z"
    )
    assert fired == ["2026-10-31T05:30Z", "2026-11-01T05:30Z", "2026-11-02T06:30Z"]


async def test_new_york_fall_back_fires_an_every_hour_rule_at_every_instant(autojump_clock):
    fired = await fires_between(
        "30 * * * *", "America/New_York", "2026-11-01T04:00Z", "2026-11-01T08:00Z"
    )
    # 00:30 EDT, 01:30 EDT, 01:30 EST, 02:30 EST
    assert fired == [
        "2026-11-01T04:30Z",
        "2026-11-01T05:30Z",
        "2026-11-01T06:30Z",
        "2026-11-01T07:30Z",
    ]


async def test_london_spring_forward_fires_a_skipped_time_once_shifted(autojump_clock):
    # 2026-03-29: 01:00 GMT jumps to 02:00 BST; 01:30 does not exist that day.
    fired = await fires_between(
        "30 1 * * *", "Europe/London", "2026-03-28T00:00Z", "2026-03-31T00:00Z"
    )
    assert fired == [
        "2026-03-28T01:30Z",  # 01:30 GMT
        "2026-03-29T01:30Z",  # the skipped 01:30, at 02:30 BST
        "2026-03-30T00:30Z",  # 01:30 BST
    ]


async def test_london_fall_back_fires_fixed_once_and_stepped_hours_twice(autojump_clock):
    # 2026-10-25: 02:00 BST falls back to 01:00 GMT; 01:30 happens twice.
    fixed = await fires_between(
        "30 1 * * *", "Europe/London", "2026-10-24T00:00Z", "2026-10-27T00:00Z"
    )
    assert fixed == ["2026-10-24T00:30Z", "2026-10-25T00:30Z", "2026-10-26T01:30Z"]
    stepped = await fires_between(
        "30 */1 * * *", "Europe/London", "2026-10-24T23:00Z", "2026-10-25T03:00Z"
    )
    # 00:30 BST, 01:30 BST, 01:30 GMT, 02:30 GMT
    assert stepped == [
        "2026-10-24T23:30Z",
        "2026-10-25T00:30Z",
        "2026-10-25T01:30Z",
        "2026-10-25T02:30Z",
    ]
