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
from datetime import datetime

import trio

from crewboard.board import db, dispatch
from crewboard.board.models import RunOutcome
from crewboard.clock import utcnow
from crewboard.home import Home
from crewboard.supervisor.launcher import Launcher
from crewboard.supervisor.polling import next_delay_s, serve_polling
from crewboard.supervisor.wake import Wakeup

log = logging.getLogger(__name__)


def _look(supervisor_id: str, watching: bool, *, now: datetime) -> list[int]:
    """The round's first look, in one trip to a worker thread: make waiting
    jobs ready, and (while this supervisor runs any) find its runs users
    asked to cancel."""
    dispatch.promote_waiting(now=now)
    return dispatch.runs_to_cancel(supervisor_id) if watching else []


class Dispatcher:
    def __init__(
        self,
        supervisor_id: str,
        home: Home,
        launcher: Launcher,
        poll_s: float,
        user_concurrency: int | None = None,
    ) -> None:
        self.supervisor_id = supervisor_id
        self.home = home
        self.launcher = launcher
        self.poll_s = poll_s
        self.user_concurrency = user_concurrency
        self.outlook = dispatch.Outlook()
        self._checked_lost_at = -math.inf
        # The owner of the last job claimed: the next claim starts with the
        # owner after them, so users take turns (fair share).
        self._last_owner = 0

    async def run_round(self) -> float:
        """One look at the board; returns the delay until the next."""
        watching = bool(self.launcher.supervised())
        to_cancel = await db.call(_look, self.supervisor_id, watching, now=utcnow())
        await self._stop_cancelled(to_cancel)
        slots = self.launcher.free_slots
        if slots > 0:
            claims = await db.call(
                dispatch.claim_ready_jobs,
                self.supervisor_id,
                self.home.run_log,
                limit=slots,
                after_owner=self._last_owner,
                user_concurrency=self.user_concurrency,
                now=utcnow(),
            )
            for claim in claims:
                log.debug("claimed job %s as run %s", claim.job_id, claim.run_id)
                self._last_owner = claim.owner_id
                await self.launcher.launch(claim)
        now = utcnow()
        self.outlook = await db.call(dispatch.outlook, now=now)
        return next_delay_s(now, self.outlook.next_due_at, self.poll_s)

    async def _stop_cancelled(self, to_cancel: list[int]) -> None:
        for run_id in to_cancel:
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
