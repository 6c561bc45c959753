"""Supervisor heartbeats: one row per supervisor process. Liveness is the age
of the latest beat and nothing else (stale after three intervals)."""

from __future__ import annotations

from datetime import datetime

from crewboard.board.db import write
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
    now: datetime,
) -> None:
    values = dict(
        pid=pid,
        host=host,
        version=version,
        started_at=started_at,
        beat_at=now,
        interval_s=interval_s,
        running=running,
        capacity=capacity,
        stopped_at=None,
    )
    updated = Heartbeat.update(**values).where(Heartbeat.supervisor_id == supervisor_id).execute()
    if not updated:
        Heartbeat.create(supervisor_id=supervisor_id, **values)


@write
def mark_stopped(supervisor_id: str, *, now: datetime) -> None:
    Heartbeat.update(stopped_at=now, running=0).where(
        Heartbeat.supervisor_id == supervisor_id
    ).execute()


def is_alive(row: Heartbeat, *, now: datetime) -> bool:
    if row.stopped_at is not None:
        return False
    age_s = (now - row.beat_at).total_seconds()
    return age_s <= STALE_AFTER_INTERVALS * row.interval_s


def status(ready_jobs: int, *, now: datetime, keep_s: float = 86400.0) -> dict:
    """What ``/api/dispatcher/status`` reports: liveness from the newest
    heartbeat's age, and one row per supervisor seen within ``keep_s``."""
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
