"""The supervisor's heartbeat: a board row rewritten every interval with what
this supervisor is doing, plus systemd's watchdog and status line. Each beat
renews the leases of this supervisor's runs (``board/leases.py``): a run the
renewal no longer holds (a peer rescued it) has its runner stopped, and each
held run's runner is told of the renewal (an empty line on its stdin), which keeps
it going (a runner told of none stops itself, ``runner/lease.py``). If renewals
fail for half a lease, :func:`serve_fence` stops every runner and the
supervisor claims nothing until one succeeds: by the time a peer may rescue
a run, its runner is gone. On the same cadence, at its first beat and then
hourly, it purges the board's expired sign-in sessions."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import trio

from crewboard import __version__
from crewboard.board import db, heartbeats, users
from crewboard.board.dispatch import READY_COUNT_CAP
from crewboard.clock import utcnow
from crewboard.systemd import Notifier

log = logging.getLogger(__name__)

# Expired sessions sign no one in; purging them is housekeeping, not urgent.
PURGE_SESSIONS_EVERY_S = 3600.0


def host_identity() -> str:
    """Which kernel boot and pid namespace this process runs in: the same
    for every process whose pids can be compared with this one's, different
    on another machine, after a reboot, and in another container even under
    the same hostname."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = socket.gethostname()
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{boot}:{namespace}"


@dataclass
class Identity:
    """Who this supervisor is, as written in its heartbeat and its runs."""

    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    host_identity: str = field(default_factory=host_identity)
    started_at: datetime = field(default_factory=utcnow)
    version: str = __version__

    @property
    def supervisor_id(self) -> str:
        return f"{self.host}:{self.pid}:{int(self.started_at.timestamp() * 1000)}"


class LeaseHolder(Protocol):
    """What the heartbeat keeps leases for (the launcher)."""

    def supervised(self) -> set[int]: ...

    def hold(self, held: set[int], asked: set[int]) -> None: ...

    def fence(self) -> None: ...


@dataclass
class Leases:
    """This supervisor's leases on its runs: how long one lasts, and when
    (on trio's clock) the last renewal was sent that succeeded."""

    lease_s: float
    holder: LeaseHolder
    renewed_at: float = field(default_factory=trio.current_time)

    @property
    def safe_s(self) -> float:
        """How long after a renewal the runs are surely still held: half a
        lease, leaving the other half to stop the runners."""
        return self.lease_s / 2


async def serve_heartbeat(
    identity: Identity,
    interval_s: float,
    load: Callable[[], tuple[int, int, int]],
    notifier: Notifier,
    leases: Leases | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Beat every ``interval_s`` until cancelled, renewing ``leases``.
    ``load`` returns (running, capacity, ready) for the row and systemd's
    STATUS line."""
    first = True
    purged_at: float | None = None
    while True:
        running, capacity, ready = load()
        # Asked before the renewal: a run claimed after it is not in its answer.
        asked = leases.holder.supervised() if leases is not None else set()
        sent_at = trio.current_time()
        try:
            held = await db.call(
                heartbeats.beat,
                identity.supervisor_id,
                pid=identity.pid,
                host=identity.host,
                host_identity=identity.host_identity,
                version=identity.version,
                started_at=identity.started_at,
                interval_s=interval_s,
                running=running,
                capacity=capacity,
                lease_s=leases.lease_s if leases is not None else None,
            )
        except Exception:
            # A missed beat is survivable; the next one may well succeed.
            log.exception("could not write the heartbeat")
        else:
            if leases is not None:
                leases.renewed_at = sent_at
                leases.holder.hold(held, asked)
            waiting = f"{ready}+" if ready >= READY_COUNT_CAP else str(ready)
            notifier.notify(WATCHDOG=1, STATUS=f"running {running}/{capacity}, {waiting} ready")
        if purged_at is None or trio.current_time() - purged_at >= PURGE_SESSIONS_EVERY_S:
            purged_at = trio.current_time()
            await _purge_sessions()
        if first:
            first = False
            task_status.started()
        await trio.sleep(interval_s)


async def serve_fence(
    leases: Leases, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Fence this supervisor whenever its leases may be about to lapse: no
    renewal has succeeded for :attr:`Leases.safe_s` (the board unreachable,
    or this process frozen). Then every runner is stopped and nothing is
    claimed until a renewal succeeds again (``holder.fence``)."""
    task_status.started()
    while True:
        deadline = leases.renewed_at + leases.safe_s
        if trio.current_time() < deadline:
            await trio.sleep_until(deadline)
            continue
        leases.holder.fence()
        # Until the next renewal; looked at again often, it costs nothing.
        await trio.sleep(min(1.0, leases.safe_s / 4))


async def _purge_sessions() -> None:
    try:
        purged = await db.call(users.purge_expired_sessions, now=utcnow())
    except Exception:
        # Left for the next hour; nothing waits on it.
        log.exception("could not purge expired sessions")
    else:
        if purged:
            log.info("purged %d expired session(s)", purged)
