"""The supervisor's wakeable poll loop, shared by the dispatcher and the
scheduler: run a step, which returns how long to wait before the next; wait
that long or until the :class:`~crewboard.supervisor.wake.Wakeup` is set,
whichever is first; never start two steps closer together than a floor.

A step computes its delay with :func:`next_delay_s`: the poll interval, or
less when something on the board comes due sooner.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

import trio

from crewboard.supervisor.wake import Wakeup

log = logging.getLogger(__name__)

# The shortest wait between two steps. A clock that runs a hair behind the
# timer (the board's due times are wall-clock, the wait is trio's) or a burst
# of wake-ups must not turn into a busy loop.
MIN_DELAY_S = 0.005


def next_delay_s(now: datetime, due_at: datetime | None, poll_s: float) -> float:
    """How long to wait before the next step: until ``due_at``, but no longer
    than ``poll_s`` and not below zero (overdue: go again at once)."""
    if due_at is None:
        return poll_s
    return max(0.0, min(poll_s, (due_at - now).total_seconds()))


async def serve_polling(
    step: Callable[[], Awaitable[float]],
    wakeup: Wakeup,
    *,
    name: str,
    retry_s: float,
    floor_s: float = MIN_DELAY_S,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``step`` until cancelled, each time after the delay it returned or
    as soon as ``wakeup`` is set, but never sooner than ``floor_s`` after the
    previous step ended. A step that raises is logged as ``name`` and tried
    again after ``retry_s``. Ready once the first step has run."""
    started = False
    while True:
        # Cleared before the step, so a nudge that lands while it runs is
        # kept for the next one rather than lost.
        wakeup.clear()
        try:
            delay_s = await step()
        except Exception:
            # The board may be briefly unavailable; the next step retries.
            log.exception("%s round failed", name)
            delay_s = retry_s
        if not started:
            task_status.started()
            started = True
        resume_at = trio.current_time() + max(delay_s, floor_s)
        await trio.sleep(floor_s)
        with trio.move_on_at(resume_at):
            await wakeup.wait()
