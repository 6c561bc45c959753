"""The reaper: closes runs left ``running`` with no runner behind them.

At boot, before this supervisor claims anything, and then every few heartbeat
intervals (so a peer supervisor's death is noticed while this one runs), it
closes each peer's run its supervisor no longer holds — its lease expired by
the board's clock, or its supervisor stopped, or gone from this very host
identity — as ``succeeded`` if the log ends in a ``final_result``, else
``interrupted``, and requeues the job
(:func:`crewboard.board.recovery.recover_orphans`). A run whose lease holds is
never touched — except this supervisor's own: a run it owns on the
board that its launcher no longer holds (the runner gone, its end never
recorded), once older than :data:`LOST_GRACE_S`, is closed the same way
(:func:`crewboard.board.recovery.recover_lost_runs`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import timedelta

import trio

from crewboard import metrics
from crewboard.board import db, recovery
from crewboard.clock import utcnow
from crewboard.processes import pid_alive
from crewboard.supervisor.heartbeat import Identity

log = logging.getLogger(__name__)

# Recover peers' orphans this many heartbeat intervals apart.
EVERY_HEARTBEATS = 5
# A run this supervisor claimed reaches its launcher within moments; one its
# launcher has not held for this long after it started is lost.
LOST_GRACE_S = 30.0


async def run_recovery(identity: Identity) -> list[recovery.Recovered]:
    """Close the runs of dead supervisors once; returns what was closed."""
    return _counted(
        await db.call(
            recovery.recover_orphans,
            identity.supervisor_id,
            identity.host_identity,
            pid_alive,
        )
    )


def _counted(recovered: list[recovery.Recovered]) -> list[recovery.Recovered]:
    """Count the runs recovery closed with the runs that ended (metrics)."""
    for run in recovered:
        metrics.run_recovered(run.outcome.value)
    return recovered


async def run_lost_recovery(
    identity: Identity, held: Callable[[], Collection[int]]
) -> list[recovery.Recovered]:
    """Close this supervisor's own runs that its launcher no longer holds
    (``held()``: the runs it is running or still recording), started more
    than :data:`LOST_GRACE_S` ago; returns what was closed."""
    now = utcnow()
    candidates = await db.call(
        recovery.own_live_runs,
        identity.supervisor_id,
        started_before=now - timedelta(seconds=LOST_GRACE_S),
    )
    # Asked after the board was read: a run handed to the launcher meanwhile is held.
    still = set(held())
    lost = [run_id for run_id in candidates if run_id not in still]
    if not lost:
        return []
    for run_id in lost:
        log.warning("run %s is running on the board but no longer here; closing it", run_id)
    return _counted(await db.call(recovery.recover_lost_runs, identity.supervisor_id, lost))


async def serve_reaper(
    identity: Identity,
    heartbeat_s: float,
    on_recovered: Callable[[], None],
    held: Callable[[], Collection[int]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Recover peers' orphans, and this supervisor's lost runs (see
    :func:`run_lost_recovery`), periodically until cancelled."""
    task_status.started()
    while True:
        await trio.sleep(max(1.0, EVERY_HEARTBEATS * heartbeat_s))
        try:
            recovered = await run_recovery(identity)
            recovered += await run_lost_recovery(identity, held)
        except Exception:
            log.exception("orphan recovery failed")
            continue
        if recovered:
            on_recovered()
