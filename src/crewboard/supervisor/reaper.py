"""The reaper: closes runs left ``running`` by supervisors that died.

At boot, before this supervisor claims anything, and then every few heartbeat
intervals (so a peer supervisor's death is noticed while this one runs), it
closes each run whose supervisor is not alive — heartbeat stale or stopped,
or, on this host, its pid gone — as ``succeeded`` if the log ends in a
``final_result``, else ``interrupted``, and requeues the job
(:func:`crewboard.board.recovery.recover_orphans`). A run whose supervisor is
alive is never touched.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import trio

from crewboard.board import db, recovery
from crewboard.clock import utcnow
from crewboard.supervisor.heartbeat import Identity

log = logging.getLogger(__name__)

# Recover peers' orphans this many heartbeat intervals apart.
EVERY_HEARTBEATS = 5


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    return True


async def run_recovery(identity: Identity) -> list[recovery.Recovered]:
    """Close the runs of dead supervisors once; returns what was closed."""
    return await db.call(
        recovery.recover_orphans, identity.supervisor_id, identity.host, pid_alive, now=utcnow()
    )


async def serve_reaper(
    identity: Identity,
    heartbeat_s: float,
    on_recovered: Callable[[], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Recover peers' orphans periodically until cancelled."""
    task_status.started()
    while True:
        await trio.sleep(max(1.0, EVERY_HEARTBEATS * heartbeat_s))
        try:
            if await run_recovery(identity):
                on_recovered()
        except Exception:
            log.exception("orphan recovery failed")
