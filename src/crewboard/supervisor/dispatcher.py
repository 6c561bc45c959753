"""The dispatcher: the supervisor's poller of the board. Each round it makes
waiting jobs ready, stops the runs users cancelled, claims ready jobs up to the
free runner slots and hands them to the launcher; then it sleeps until the
next poll (``poll_s``), the next job coming due (a retry's backoff, a
scheduled time), or a wake-up (the web process's datagram, a run ending
without a job to take its slot), whichever is first
(:func:`~crewboard.supervisor.polling.serve_polling`).

While it serves, a run's end claims the next ready job for the slot it frees
in the same trip to the board (:meth:`Dispatcher.claim_for_slot`, the
launcher's ``refill``): a busy board runs job after job without a round
between them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import trio

from crewboard.board import db, dispatch
from crewboard.board.models import RunOutcome
from crewboard.clock import utcnow
from crewboard.home import Home
from crewboard.supervisor.launcher import Launcher, Prepared
from crewboard.supervisor.polling import next_delay_s, serve_polling
from crewboard.supervisor.wake import Wakeup

log = logging.getLogger(__name__)

# The shortest wait between two rounds. Every run's end wakes the dispatcher
# to fill the slot it freed, so this is what a freed slot may wait beyond the
# round itself; the wake-ups of a burst still make one round, not many.
ROUND_FLOOR_S = 0.001


@dataclass(frozen=True)
class RoundPlan:
    """What one dispatch round found and took on the board."""

    to_cancel: list[int]  # this supervisor's runs that users asked to cancel
    claims: list[tuple[dispatch.Claim, Prepared]]  # each with its runner's spec
    outlook: dispatch.Outlook  # the board as the round leaves it


def _round_on_board(
    supervisor_id: str,
    claim_ready: Callable[[int, datetime], list[dispatch.Claim]],
    prepare: Callable[[dispatch.Claim], Prepared],
    *,
    watching: bool,
    slots: int,
    now: datetime,
) -> RoundPlan:
    """A round's board work, in one trip to a worker thread: make waiting
    jobs ready, find runs to cancel (while this supervisor runs any), claim
    jobs for the free slots (``claim_ready(limit, now)``) and prepare their
    runners' specs, and look at what is left."""
    dispatch.promote_waiting(now=now)
    to_cancel = dispatch.runs_to_cancel(supervisor_id) if watching else []
    claims = claim_ready(slots, now) if slots > 0 else []
    outlook = dispatch.outlook(now=now)
    # After the claims' transaction: the board is not held while files are made.
    return RoundPlan(to_cancel, [(claim, prepare(claim)) for claim in claims], outlook)


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
        plan = await db.call(
            _round_on_board,
            self.supervisor_id,
            self._claim_ready,
            self.launcher.prepare,
            watching=bool(self.launcher.supervised()),
            slots=self.launcher.free_slots,
            now=utcnow(),
        )
        await self._stop_cancelled(plan.to_cancel)
        for claim, prepared in plan.claims:
            log.debug("claimed job %s as run %s", claim.job_id, claim.run_id)
            self._last_owner = claim.owner_id
            await self.launcher.launch(claim, prepared)
        self.outlook = plan.outlook
        return next_delay_s(utcnow(), self.outlook.next_due_at, self.poll_s)

    def _claim_ready(self, limit: int, now: datetime) -> list[dispatch.Claim]:
        """On a worker thread: claim up to ``limit`` ready jobs, starting with
        the owner after the last one served (users take turns)."""
        return dispatch.claim_ready_jobs(
            self.supervisor_id,
            self.home.run_log,
            limit=limit,
            after_owner=self._last_owner,
            user_concurrency=self.user_concurrency,
            now=now,
            lease_s=self.launcher.config.run_lease_s,
        )

    def claim_for_slot(self) -> tuple[dispatch.Claim, Prepared] | None:
        """On a worker thread, in a run's end: claim one ready job for the
        slot it frees (owners in turn, as a round does) and prepare its
        runner's spec; None when nothing is ready."""
        claims = self._claim_ready(1, utcnow())
        if not claims:
            return None
        claim = claims[0]
        log.debug("claimed job %s as run %s for a freed slot", claim.job_id, claim.run_id)
        self._last_owner = claim.owner_id
        return claim, self.launcher.prepare(claim)

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
    """Run dispatch rounds until cancelled, woken early by ``wakeup``, and
    let runs' ends refill their slots meanwhile. Ready once the first round
    has looked at the board."""
    launcher = dispatcher.launcher
    launcher.refill = dispatcher.claim_for_slot
    try:
        await serve_polling(
            dispatcher.run_round,
            wakeup,
            name="dispatch",
            retry_s=dispatcher.poll_s,
            floor_s=ROUND_FLOOR_S,
            task_status=task_status,
        )
    finally:
        # Stopped (the supervisor drains): no run's end takes new work.
        launcher.refill = None
