"""The supervisor's heartbeat: a board row rewritten every interval with what
this supervisor is doing, plus systemd's watchdog and status line. On the
same cadence, at its first beat and then hourly, it purges the board's
expired sign-in sessions."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import trio

from crewboard import __version__
from crewboard.board import db, heartbeats, users
from crewboard.board.dispatch import READY_COUNT_CAP
from crewboard.clock import utcnow
from crewboard.systemd import Notifier

log = logging.getLogger(__name__)

# Expired sessions sign no one in; purging them is housekeeping, not urgent.
PURGE_SESSIONS_EVERY_S = 3600.0


@dataclass
class Identity:
    """Who this supervisor is, as written in its heartbeat and its runs."""

    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    started_at: datetime = field(default_factory=utcnow)
    version: str = __version__

    @property
    def supervisor_id(self) -> str:
        return f"{self.host}:{self.pid}:{int(self.started_at.timestamp() * 1000)}"


async def serve_heartbeat(
    identity: Identity,
    interval_s: float,
    load: Callable[[], tuple[int, int, int]],
    notifier: Notifier,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Beat every ``interval_s`` until cancelled. ``load`` returns (running,
    capacity, ready) for the row and systemd's STATUS line."""
    first = True
    purged_at: float | None = None
    while True:
        running, capacity, ready = load()
        try:
            await db.call(
                heartbeats.beat,
                identity.supervisor_id,
                pid=identity.pid,
                host=identity.host,
                version=identity.version,
                started_at=identity.started_at,
                interval_s=interval_s,
                running=running,
                capacity=capacity,
                now=utcnow(),
            )
        except Exception:
            # A missed beat is survivable; the next one may well succeed.
            log.exception("could not write the heartbeat")
        else:
            waiting = f"{ready}+" if ready >= READY_COUNT_CAP else str(ready)
            notifier.notify(WATCHDOG=1, STATUS=f"running {running}/{capacity}, {waiting} ready")
        if purged_at is None or trio.current_time() - purged_at >= PURGE_SESSIONS_EVERY_S:
            purged_at = trio.current_time()
            await _purge_sessions()
        if first:
            first = False
            task_status.started()
        await trio.sleep(interval_s)


async def _purge_sessions() -> None:
    try:
        purged = await db.call(users.purge_expired_sessions, now=utcnow())
    except Exception:
        # Left for the next hour; nothing waits on it.
        log.exception("could not purge expired sessions")
    else:
        if purged:
            log.info("purged %d expired session(s)", purged)
