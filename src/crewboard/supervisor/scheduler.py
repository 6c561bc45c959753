"""The supervisor's scheduler: fires schedules whose time has come.

Each round reads the schedules that are due, works out each one's fire
(:func:`crewboard.cron.due_fires`: fires missed while the supervisor was down
coalesce into one), renders the crew of the schedule's template, and hands
both to the board's :func:`~crewboard.board.schedules.record_schedule_fire`,
which spawns the crew, skips for overlap or refuses a duplicate in one
transaction. Rendering comes first, so no template is rendered while the
board's write lock is held. A round returns
its delay: the time to the earliest next fire, capped at ``poll_s``, so a fire
happens at its time and a change the scheduler was not told about is seen
within a poll. The supervisor's wake-up cuts the wait short when the web
process creates, edits or enables a schedule.

The scheduler reads the time only through the ``clock`` it is given, and the
board only through a :class:`ScheduleStore`, so its timing is tested in
virtual time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import trio

from crewboard import cron, metrics, textcheck
from crewboard.board import db, schedule_views
from crewboard.board import schedules as board_schedules
from crewboard.board.schedule_views import DueSchedule
from crewboard.board.schedules import FireOutcome, FireResult
from crewboard.catalog import Catalog
from crewboard.clock import iso, utcnow
from crewboard.config import Config
from crewboard.errors import NotFound, ValidationFailed
from crewboard.supervisor.polling import next_delay_s, serve_polling
from crewboard.supervisor.wake import Wakeup
from crewboard.workflows import Template, render_crew

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# Just before a fire time: the rule's next fire after this instant is the fire
# time itself exactly when it is one of the rule's times.
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class PlannedFire:
    """What to do for one due schedule (see ``record_schedule_fire``)."""

    schedule_id: int
    fire_at: datetime
    missed: int
    due_from: datetime
    next_run_at: datetime


class CannotSpawn(Exception):
    """A schedule's stored values can never make a crew (inputs kept from
    before the web refused such strings, say): the scheduler pauses it."""


@dataclass(frozen=True)
class Unreadable:
    """A due schedule whose stored rule or zone can no longer be read, or
    that cannot spawn from what it stores; ``reason`` says which."""

    schedule_id: int
    due_from: datetime
    reason: str


def plan_fire(due: DueSchedule, now: datetime) -> PlannedFire | Unreadable | None:
    """The fire a due schedule makes at ``now``: every fire time from its
    ``next_run_at`` up to ``now`` coalesced into one, at the latest of them.
    None if nothing is due yet.

    ``next_run_at`` is the fire the board promised, so it counts even when it
    is not one of the rule's times (an operator or a test set it by hand)."""
    if due.next_run_at > now:
        return None
    try:
        fire_at, missed, next_run_at = cron.due_fires(due.rule, due.timezone, due.next_run_at, now)
        on_rule = cron.next_fire(due.rule, due.timezone, due.next_run_at - _TICK) == due.next_run_at
    except ValidationFailed as exc:
        return Unreadable(due.id, due.next_run_at, str(exc))
    if not on_rule:
        fire_at, missed = fire_at or due.next_run_at, missed + 1
    assert fire_at is not None
    return PlannedFire(due.id, fire_at, missed, due.next_run_at, next_run_at)


class ScheduleStore(Protocol):
    """What the scheduler needs of the board."""

    async def due(self, now: datetime) -> list[DueSchedule]: ...

    async def next_fire_at(self) -> datetime | None: ...

    async def fire(
        self, fire: PlannedFire, now: datetime, templates: Mapping[str, Template]
    ) -> FireResult: ...

    async def disable_unreadable(self, broken: Unreadable) -> None: ...

    async def templates(self) -> Mapping[str, Template]: ...


class BoardStore:
    """The real board, reached on worker threads; templates are looked at in
    the configured folders each time something is due, so edits to them apply."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.catalog = Catalog(config)

    async def due(self, now: datetime) -> list[DueSchedule]:
        return await db.call(schedule_views.due_schedules, now=now)

    async def next_fire_at(self) -> datetime | None:
        return await db.call(schedule_views.next_fire_at)

    async def fire(
        self, fire: PlannedFire, now: datetime, templates: Mapping[str, Template]
    ) -> FireResult:
        try:
            schedule = await db.call(schedule_views.get_schedule, fire.schedule_id)
        except NotFound:
            return FireResult(FireOutcome.STALE)
        unstorable = textcheck.stored_value_problems(schedule.inputs, "inputs")
        if unstorable:
            raise CannotSpawn(
                "its stored inputs cannot make a crew: "
                + "; ".join(f"{field} {problem}" for field, problem in unstorable.items())
            )
        # Rendered on a worker thread, outside the transaction; the board
        # refuses it (STALE) if the template or inputs changed meanwhile.
        crew = await trio.to_thread.run_sync(
            render_crew, templates, schedule.template_id, schedule.inputs
        )
        return await db.call(
            board_schedules.record_schedule_fire,
            fire.schedule_id,
            fire.fire_at,
            crew=crew,
            due_from=fire.due_from,
            next_run_at=fire.next_run_at,
            missed=fire.missed,
            max_queued=self.config.queued_jobs_per_user,
            now=now,
        )

    async def disable_unreadable(self, broken: Unreadable) -> None:
        await db.call(
            board_schedules.disable_unreadable,
            broken.schedule_id,
            broken.due_from,
            broken.reason,
            now=utcnow(),
        )

    async def templates(self) -> Mapping[str, Template]:
        return await self.catalog.templates()


class Scheduler:
    """Rounds of firing due schedules. ``on_spawned`` is called after a round
    that spawned a crew (the supervisor wakes its dispatcher with it)."""

    def __init__(
        self,
        store: ScheduleStore,
        poll_s: float,
        *,
        clock: Clock = utcnow,
        on_spawned: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.poll_s = poll_s
        self.clock = clock
        self.on_spawned = on_spawned

    async def _pause(self, schedule_id: int, due_from: datetime, exc: Exception) -> bool:
        """Pause a schedule that cannot fire; False if even that failed."""
        if isinstance(exc, CannotSpawn):
            reason = str(exc)
            log.warning("schedule %s paused: %s", schedule_id, reason)
        else:
            reason = f"it could not spawn a crew ({type(exc).__name__}: {exc})"
            log.exception("schedule %s paused: it could not spawn a crew", schedule_id)
        # The reason is stored: nothing in it may be unstorable in turn.
        reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")[:1000]
        try:
            await self.store.disable_unreadable(Unreadable(schedule_id, due_from, reason))
        except Exception:
            log.exception("could not pause schedule %s; trying again", schedule_id)
            return False
        return True

    async def run_round(self) -> float:
        """Fire every due schedule; return the delay before the next round."""
        now = self.clock()
        due = await self.store.due(now)
        failed = spawned = False
        templates: Mapping[str, Template] | None = None
        for row in due:
            planned = plan_fire(row, now)
            if planned is None:
                continue
            try:
                if isinstance(planned, Unreadable):
                    log.warning("schedule %s paused: %s", row.id, planned.reason)
                    await self.store.disable_unreadable(planned)
                    continue
                if templates is None:
                    templates = await self.store.templates()
                result = await self.store.fire(planned, now, templates)
            except Exception as exc:
                # One schedule that will not fire must not stop the others.
                # A passing trouble (a lock, a full disk) is tried again next
                # poll; anything else would fail the same way every poll, so
                # the schedule is paused, with an event that says why.
                metrics.schedule_fired("error", 0)
                if db.is_transient_error(exc):
                    log.exception("could not fire schedule %s; trying again", row.id)
                    failed = True
                elif not await self._pause(row.id, planned.due_from, exc):
                    failed = True
                continue
            metrics.schedule_fired(result.outcome.value, planned.missed)
            spawned = spawned or result.outcome is FireOutcome.SPAWNED
            log.info(
                "schedule %s fire at %s: %s%s%s",
                row.id,
                iso(planned.fire_at),
                result.outcome,
                f" (crew {result.crew_id})" if result.crew_id else "",
                f", {planned.missed} fires coalesced" if planned.missed > 1 else "",
            )
        if spawned:
            self.on_spawned()
        if failed:
            return self.poll_s
        return next_delay_s(self.clock(), await self.store.next_fire_at(), self.poll_s)


async def serve_scheduler(
    config: Config,
    wakeup: Wakeup,
    *,
    on_spawned: Callable[[], None] = lambda: None,
    clock: Clock = utcnow,
    store: ScheduleStore | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Fire schedules until cancelled: run a round, then wait its delay or
    until ``wakeup`` (the scheduler's own) is set, as it is when a schedule is
    created, edited or enabled. ``on_spawned`` tells the dispatcher a crew is
    waiting. ``store`` defaults to the board."""
    board = None
    if store is None:
        store = board = BoardStore(config)
    scheduler = Scheduler(
        store,
        config.poll_s,
        clock=clock,
        on_spawned=on_spawned,
    )
    # Ready before the first round: firing what is due need not hold up the
    # supervisor's start.
    task_status.started()
    try:
        await serve_polling(scheduler.run_round, wakeup, name="scheduler", retry_s=scheduler.poll_s)
    finally:
        if board is not None:
            board.catalog.close()
