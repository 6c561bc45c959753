"""Supervisor heartbeats: one row per supervisor process. Liveness is the age
of the latest beat and nothing else (stale after three intervals), by the
board's clock (board/leases.py): a beat is stamped with it, and its age
measured on it, so a host whose clock runs fast or slow cannot make a peer
look dead. A beat also renews the leases of the supervisor's runs."""

from __future__ import annotations

from datetime import datetime

from crewboard.board import leases
from crewboard.board.db import write
from crewboard.board.leases import board_now, clock_value
from crewboard.board.models import Heartbeat
from crewboard.clock import iso

STALE_AFTER_INTERVALS = 3


@write
def beat(
    supervisor_id: str,
    *,
    pid: int,
    host: str,
    version: str,
    started_at: datetime,
    interval_s: float,
    running: int,
    capacity: int,
    host_identity: str | None = None,
    lease_s: float | None = None,
    now: datetime | None = None,
) -> set[int]:
    """Write this supervisor's beat; with ``lease_s``, renew its runs'
    leases in the same transaction (:func:`crewboard.board.leases.renew`)
    and return the runs it still holds (else an empty set)."""
    values = dict(
        pid=pid,
        host=host,
        host_identity=host_identity,
        version=version,
        started_at=started_at,
        beat_at=clock_value(now),
        interval_s=interval_s,
        running=running,
        capacity=capacity,
        stopped_at=None,
    )
    updated = Heartbeat.update(**values).where(Heartbeat.supervisor_id == supervisor_id).execute()
    if not updated:
        Heartbeat.insert(supervisor_id=supervisor_id, **values).execute()
    if lease_s is None:
        return set()
    return leases.renew(supervisor_id, lease_s, now=now)


@write
def mark_stopped(supervisor_id: str, *, now: datetime | None = None) -> None:
    Heartbeat.update(stopped_at=clock_value(now), running=0).where(
        Heartbeat.supervisor_id == supervisor_id
    ).execute()


def is_alive(row: Heartbeat, *, now: datetime) -> bool:
    if row.stopped_at is not None:
        return False
    age_s = (now - row.beat_at).total_seconds()
    return age_s <= STALE_AFTER_INTERVALS * row.interval_s


def status(ready_jobs: int, *, now: datetime | None = None, keep_s: float = 86400.0) -> dict:
    """What ``/api/dispatcher/status`` reports: liveness from the newest
    heartbeat's age (by the board's clock unless ``now`` is given), and one
    row per supervisor seen within ``keep_s``."""
    now = now or board_now()
    rows = [
        row
        for row in Heartbeat.select().order_by(Heartbeat.beat_at.desc())
        if (now - row.beat_at).total_seconds() <= keep_s
    ]
    live = [row for row in rows if is_alive(row, now=now)]
    latest = rows[0] if rows else None
    return {
        "alive": bool(live),
        "lastHeartbeatAt": iso(latest.beat_at) if latest else None,
        "ageSeconds": round((now - latest.beat_at).total_seconds(), 3) if latest else None,
        "running": sum(row.running for row in live),
        "capacity": sum(row.capacity for row in live),
        "ready": ready_jobs,
        "supervisors": [
            {
                "id": row.supervisor_id,
                "pid": row.pid,
                "host": row.host,
                "version": row.version,
                "startedAt": iso(row.started_at),
                "lastHeartbeatAt": iso(row.beat_at),
                "ageSeconds": round((now - row.beat_at).total_seconds(), 3),
                "alive": is_alive(row, now=now),
                "running": row.running,
                "capacity": row.capacity,
                "stoppedAt": iso(row.stopped_at),
            }
            for row in rows
        ],
    }
