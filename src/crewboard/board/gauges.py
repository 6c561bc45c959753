"""What the board says at a metrics scrape (``GET /metrics``): jobs by
status and the live supervisors' runners against their capacity. Read at
scrape time rather than counted, so it is right whichever process changed
the board."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import peewee

from crewboard.board import heartbeats
from crewboard.board.models import Job, JobStatus
from crewboard.metrics import BoardGauges


def board_gauges(*, now: datetime) -> BoardGauges:
    counts = {status.value: 0 for status in JobStatus}
    rows: Any = Job.select(Job.status, peewee.fn.COUNT(Job.id)).group_by(Job.status).tuples()
    for status, count in rows:
        counts[str(status)] = int(count)
    status = heartbeats.status(0)
    return BoardGauges(
        jobs_by_status=counts,
        runners_running=int(status["running"]),
        runners_capacity=int(status["capacity"]),
        supervisors_live=sum(1 for row in status["supervisors"] if row["alive"]),
    )
