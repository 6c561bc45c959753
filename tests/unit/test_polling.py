"""The supervisor's wakeable poll loop in virtual time: a step runs again
after the delay it returned, sooner when woken, never sooner than the floor,
and after a step that failed, at the retry interval. And the delay a step
returns: until the next thing comes due, capped at the poll interval."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
import trio

from crewboard.supervisor.polling import MIN_DELAY_S, next_delay_s, serve_polling
from crewboard.supervisor.wake import Wakeup

NOW = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("due_at", "expected"),
    [
        (None, 1.0),  # nothing due: poll
        (NOW + timedelta(milliseconds=250), 0.25),  # sooner than a poll: wait just that long
        (NOW + timedelta(hours=1), 1.0),  # later: no longer than a poll
        (NOW - timedelta(seconds=5), 0.0),  # overdue: go again at once (the loop's floor holds)
    ],
)
def test_the_delay_is_until_the_next_due_time_capped_at_the_poll(due_at, expected):
    assert next_delay_s(NOW, due_at, 1.0) == pytest.approx(expected)


class Steps:
    """A step that records when it ran, returns ``delay_s`` and, if given,
    sets ``nudge`` while it runs. Past ``limit`` runs it asks for an hour and
    stops nudging, so a loop that spun would fail the test, not hang it."""

    def __init__(self, delay_s: float, nudge: Wakeup | None = None, limit: int = 50) -> None:
        self.delay_s = delay_s
        self.nudge = nudge
        self.limit = limit
        self.times: list[float] = []

    async def __call__(self) -> float:
        self.times.append(trio.current_time())
        if len(self.times) > self.limit:
            return 3600.0
        if self.nudge is not None:
            self.nudge.set()
        return self.delay_s

    def gaps(self) -> list[float]:
        return gaps(self.times)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def poll_for(
    step: Callable[[], Awaitable[float]],
    wakeup: Wakeup,
    seconds: float,
    *,
    retry_s: float = 10.0,
    floor_s: float = MIN_DELAY_S,
) -> None:
    """Run the loop for ``seconds`` of virtual time after it is ready."""
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_polling(
                step,
                wakeup,
                name="test",
                retry_s=retry_s,
                floor_s=floor_s,
                task_status=task_status,
            )
        )
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()


async def test_a_step_runs_again_after_the_delay_it_returned(autojump_clock):
    steps = Steps(3.0)
    await poll_for(steps, Wakeup(), 10)
    assert steps.gaps() == pytest.approx([3.0, 3.0, 3.0])


async def test_a_wake_up_runs_the_next_step_early(autojump_clock):
    steps = Steps(60.0)
    wakeup = Wakeup()

    async def wake_at_five() -> None:
        await trio.sleep(5)
        wakeup.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wake_at_five)
        await poll_for(steps, wakeup, 10)
    assert steps.gaps() == pytest.approx([5.0])
    assert not wakeup.is_set()


async def test_a_wake_up_during_a_step_is_kept_for_the_next(autojump_clock):
    wakeup = Wakeup()
    steps = Steps(60.0, nudge=wakeup)
    await poll_for(steps, wakeup, 1, floor_s=0.3)
    # Each step nudged the loop, so the next ran at the floor, not a minute later.
    assert steps.gaps() == pytest.approx([0.3, 0.3, 0.3])


async def test_steps_never_run_closer_than_the_floor(autojump_clock):
    overdue = Steps(0.0)
    await poll_for(overdue, Wakeup(), 1.05, floor_s=0.1)
    assert len(overdue.times) == 11
    assert min(overdue.gaps()) == pytest.approx(0.1)

    wakeup = Wakeup()
    nudged = Steps(5.0, nudge=wakeup)
    await poll_for(nudged, wakeup, 1.05, floor_s=0.1)
    assert min(nudged.gaps()) == pytest.approx(0.1)
    assert len(nudged.times) == 11


async def test_the_loop_is_ready_once_the_first_step_has_run(autojump_clock):
    steps = Steps(60.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_polling(
                steps, Wakeup(), name="test", retry_s=1.0, task_status=task_status
            )
        )
        assert len(steps.times) == 1
        nursery.cancel_scope.cancel()


async def test_a_failed_step_is_logged_and_retried_after_the_retry_interval(autojump_clock, caplog):
    times: list[float] = []

    async def failing() -> float:
        times.append(trio.current_time())
        raise RuntimeError("board unavailable")

    with caplog.at_level(logging.ERROR, logger="crewboard.supervisor.polling"):
        await poll_for(failing, Wakeup(), 5, retry_s=2.0)
    assert gaps(times) == pytest.approx([2.0, 2.0])
    assert "test round failed" in caplog.text
