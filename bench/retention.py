"""Benchmark: with retention on, board.db and the home stay flat however many
jobs go through.

A fresh home on SQLite, and a clock this script moves on by a day per round.
Each round writes ``--per-round`` jobs as crews of four (a chain, so the
pruner must take each crew whole) with :func:`crewboard.board.jobs.create_crew`,
then plays the supervisor's part for every job: a run row, a JSONL log of
``--log-bytes``, an artifact, a workspace, the events and the result of a
done job. Then it runs one pruning pass (``supervisor/retention.py``, the
same code the supervisor runs) at that day, with ``--days`` of retention,
and measures board.db (with its WAL), the pages SQLite has in use, the home
on disk and the longest batch of the pass.

Usage: ``.venv/bin/python bench/retention.py [--jobs 5000] [--per-round 500]
[--days 3] [--log-bytes 4000] [--out FILE.json]``; ``--jobs 50000`` for the
long run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import trio

from crewboard.board import db
from crewboard.board import jobs as board_jobs
from crewboard.board.db import write
from crewboard.board.events import SUPERVISOR, EventKind, record_event
from crewboard.board.models import Job, JobStatus, Run, RunOutcome, User
from crewboard.board.retention import RetentionPolicy
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.home import Home, size_bytes
from crewboard.supervisor.retention import run_prune_pass
from crewboard.workflows.templates import CrewPlan, PlannedJob

CREW = 4


def plan(round_no: int, crew_no: int) -> CrewPlan:
    jobs = tuple(
        PlannedJob(
            key=f"j{i}",
            title=f"round {round_no} crew {crew_no} job {i}",
            agent="assistant",
            prompt="Summarise the findings of the previous step in a few lines.",
            needs=(f"j{i - 1}",) if i else (),
            artifact="out.md",
            timeout_s=600,
            retries=0,
        )
        for i in range(CREW)
    )
    return CrewPlan(template_id="bench", title=f"crew {crew_no}", inputs={}, jobs=jobs)


@write
def finish(job: Job, home: Home, log_bytes: int, *, now: datetime) -> None:
    """What the supervisor's dispatch and finish write for a done job."""
    run = Run.create(
        job=job.id,
        outcome=RunOutcome.SUCCEEDED,
        supervisor_id="bench",
        started_at=now,
        ended_at=now,
        duration_s=1.0,
        artifact="out.md",
    )
    run.log_path = str(home.run_log(run.id))
    run.save()
    for kind in (EventKind.DISPATCHED, EventKind.RUN_STARTED, EventKind.RUN_ENDED):
        record_event(kind, job=job, actor=SUPERVISOR, now=now)
    record_event(EventKind.DONE, job=job, actor=SUPERVISOR, now=now)
    Job.update(status=JobStatus.DONE, result="A result. " * 30, updated_at=now).where(
        Job.id == job.id
    ).execute()
    line = json.dumps({"type": "chunk", "text": "x" * 200}) + "\n"
    home.run_log(run.id).write_text(line * max(1, log_bytes // len(line)))
    home.artifact_dir(run.id).mkdir(parents=True)
    (home.artifact_dir(run.id) / "out.md").write_text("# Findings\n" + "- a point\n" * 40)
    home.workspace(run.id).mkdir(parents=True)


def _at(day: datetime) -> datetime:
    return day


def board_bytes(home: Home) -> int:
    wal = home.board_db.with_name("board.db-wal")
    return home.board_db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def pages_in_use() -> int:
    pages = db.database.execute_sql("PRAGMA page_count").fetchone()[0]
    free = db.database.execute_sql("PRAGMA freelist_count").fetchone()[0]
    return pages - free


class TimedCalls:
    """Times each board call of the pass: each is one batch's transaction
    (plus the hop to its worker thread)."""

    def __init__(self) -> None:
        self.longest_s = 0.0
        self._call = db.call

    async def __call__(self, fn, *args, **kwargs):
        started = time.perf_counter()
        try:
            return await self._call(fn, *args, **kwargs)
        finally:
            self.longest_s = max(self.longest_s, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--per-round", type=int, default=500)
    parser.add_argument("--days", type=float, default=3)
    parser.add_argument("--log-bytes", type=int, default=4000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="crewboard-bench-retention-"))
    home = Home(root / "home").ensure()
    db.connect(home.board_db)
    owner = User.create(email="bench@example.test", name="bench", created_at=utcnow()).id
    policy = RetentionPolicy.from_config(Config(retention_days=args.days))
    timer = TimedCalls()
    db.call = timer  # type: ignore[assignment]
    day = utcnow()
    rows = []
    written = 0
    print(
        f"{'round':>5} {'jobs written':>12} {'on board':>8} {'pruned':>6} "
        f"{'board.db+wal KiB':>16} {'pages used':>10} {'home KiB':>9} {'longest batch ms':>16}"
    )
    try:
        round_no = 0
        while written < args.jobs:
            round_no += 1
            day += timedelta(days=1)
            for crew_no in range(max(1, args.per_round // CREW)):
                _, jobs = board_jobs.create_crew(plan(round_no, crew_no), owner, now=day)
                for job in jobs:
                    finish(job, home, args.log_bytes, now=day)
                written += len(jobs)
            timer.longest_s = 0.0
            report = trio.run(
                partial(run_prune_pass, policy, home, pause_s=0, clock=partial(_at, day))
            )
            row = {
                "round": round_no,
                "jobsWritten": written,
                "jobsOnBoard": Job.select().count(),
                "pruned": len(report.job_ids),
                "boardBytes": board_bytes(home),
                "pagesInUse": pages_in_use(),
                "homeBytes": size_bytes(home.root),
                "longestBatchMs": round(timer.longest_s * 1000, 1),
            }
            rows.append(row)
            print(
                f"{round_no:>5} {written:>12} {row['jobsOnBoard']:>8} {row['pruned']:>6} "
                f"{row['boardBytes'] // 1024:>16} {row['pagesInUse']:>10} "
                f"{row['homeBytes'] // 1024:>9} {row['longestBatchMs']:>16}"
            )
        steady = rows[min(len(rows) - 1, int(args.days) + 1) :]
        growth = {
            key: max(r[key] for r in steady) / max(1, min(r[key] for r in steady))
            for key in ("boardBytes", "pagesInUse", "homeBytes")
        }
        print("after the first days, max/min:", {k: round(v, 3) for k, v in growth.items()})
        if args.out:
            args.out.write_text(json.dumps({"rounds": rows, "steadyGrowth": growth}, indent=2))
    finally:
        db.call = timer._call  # type: ignore[method-assign]
        db.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
