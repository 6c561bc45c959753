"""The dispatcher: the supervisor's poller of the board. Each round it makes
waiting jobs ready, stops the runs users cancelled, claims ready jobs up to the
free runner slots and hands them to the launcher; then it sleeps until the
next poll (``poll_s``), the next job coming due (a retry's backoff, a
scheduled time), or a wake-up (the web process's datagram, a run ending),
whichever is first (:func:`~crewboard.supervisor.polling.serve_polling`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime

import trio

from crewboard.board import db, dispatch, job_views
from crewboard.board.models import RunOutcome
from crewboard.clock import utcnow
from crewboard.home import Home
from crewboard.supervisor.launcher import Launcher
from crewboard.supervisor.polling import next_delay_s, serve_polling
from crewboard.supervisor.wake import Wakeup

log = logging.getLogger(__name__)


@dataclass
class Outlook:
    """What the board looked like at the end of the last round."""

    ready: int = 0  # jobs claimable now but left waiting for a free slot
    next_due_at: datetime | None = None  # the next moment a job becomes claimable


def _outlook(now: datetime) -> Outlook:
    return Outlook(job_views.count_ready(now=now), dispatch.next_due_at(now=now))


class Dispatcher:
    def __init__(self, supervisor_id: str, home: Home, launcher: Launcher, poll_s: float) -> None:
        self.supervisor_id = supervisor_id
        self.home = home
        self.launcher = launcher
        self.poll_s = poll_s
        self.outlook = Outlook()
        self._checked_lost_at = -math.inf

    async def run_round(self) -> float:
        """One look at the board; returns the delay until the next."""
        await db.call(dispatch.promote_waiting, now=utcnow())
        await self._stop_cancelled()
        while self.launcher.free_slots > 0:
            claim = await db.call(
                dispatch.claim_ready_job, self.supervisor_id, self.home.run_log, now=utcnow()
            )
            if claim is None:
                break
            log.debug("claimed job %s as run %s", claim.job_id, claim.run_id)
            await self.launcher.launch(claim)
        now = utcnow()
        self.outlook = await db.call(_outlook, now)
        return next_delay_s(now, self.outlook.next_due_at, self.poll_s)

    async def _stop_cancelled(self) -> None:
        for run_id in await db.call(dispatch.runs_to_cancel, self.supervisor_id):
            self.launcher.stop(run_id, RunOutcome.CANCELLED)
        supervised = self.launcher.supervised()
        if supervised and trio.current_time() - self._checked_lost_at >= self.poll_s:
            # Runs another supervisor's recovery closed while this one stalled
            # (checked once a poll interval, not on every run's end).
            self._checked_lost_at = trio.current_time()
            lost = await db.call(dispatch.runs_not_live, self.supervisor_id, list(supervised))
            # A runner that exited while the board was read had its run
            # closed by its own launcher, not lost: only those still running count.
            for run_id in set(lost) & self.launcher.supervised():
                log.warning("run %s is no longer ours on the board; stopping its runner", run_id)
                self.launcher.stop(run_id, RunOutcome.INTERRUPTED)


async def serve_dispatcher(
    dispatcher: Dispatcher,
    wakeup: Wakeup,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run dispatch rounds until cancelled, woken early by ``wakeup``. Ready
    once the first round has looked at the board."""
    await serve_polling(
        dispatcher.run_round,
        wakeup,
        name="dispatch",
        retry_s=dispatcher.poll_s,
        task_status=task_status,
    )
