"""Benchmark: what one ``GET /metrics`` scrape costs the web process as the
board grows.

A fresh home on SQLite with ``--jobs`` jobs spread over the statuses (crews
of one, written with :func:`crewboard.board.jobs.create_crew`, then set to
a status by a plain update), metrics enabled in this process, and the
counters of ``--runs`` finished runs and turns counted as the supervisor
and the web count them. Then ``--scrapes`` scrapes do what the route does:
read the board's gauges (:func:`crewboard.board.gauges.board_gauges`: jobs
by status, the heartbeats) and render every process's counts
(:func:`crewboard.metrics.exposition`). Prints the median and p90 of each
part, in milliseconds, for each board size.

Usage: ``.venv/bin/python bench/metrics_scrape.py [--jobs 1000,10000,100000]
[--runs 2000] [--scrapes 50]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from crewboard import metrics
from crewboard.board import db
from crewboard.board import jobs as board_jobs
from crewboard.board.gauges import board_gauges
from crewboard.board.models import Job, JobStatus, User
from crewboard.clock import utcnow
from crewboard.home import Home
from dispatch import plan as crew_plan

STATUSES = [s.value for s in JobStatus]


def fill(count: int) -> None:
    now = utcnow()
    owner = User.create(email="bench@example.test", name="bench", created_at=now)
    plan = crew_plan(1, "Say hello.")
    with db.transaction():
        for _ in range(count):
            board_jobs.create_crew(plan, owner.id, now=now)
    for index, status in enumerate(STATUSES):
        Job.update(status=status).where(Job.id % len(STATUSES) == index).execute()


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return (time.perf_counter() - started) * 1000, value


def p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="1000,10000,100000")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()
    print("| jobs on the board | board gauges median ms | p90 | render median ms | p90 | bytes |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(n) for n in args.jobs.split(",")):
            home = Home(Path(tmp) / f"home-{size}").ensure()
            db.connect(home.board_db)
            fill(size)
            metrics.enable(home.run_dir)  # the first board's folder serves them all
            for i in range(args.runs):
                metrics.run_finished("succeeded" if i % 5 else "failed", i % 90, i % 7)
                metrics.provider_usage(
                    "offline",
                    "job",
                    {"usage": {"requests": 2, "inputTokens": 50, "outputTokens": 20}},
                )
                metrics.chat_turn_finished("succeeded")
            gauges_ms, render_ms, size_b = [], [], 0
            for _ in range(args.scrapes):
                ms, gauges = timed(board_gauges, now=utcnow())
                gauges_ms.append(ms)
                ms, (body, _) = timed(metrics.exposition, gauges)
                render_ms.append(ms)
                size_b = len(body)
            print(
                f"| {size:,} | {statistics.median(gauges_ms):.1f} | {p90(gauges_ms):.1f} "
                f"| {statistics.median(render_ms):.1f} | {p90(render_ms):.1f} | {size_b:,} |"
            )
            db.close()


if __name__ == "__main__":
    main()
