"""Benchmark: several supervisors on one PostgreSQL board, and streams that
cross from one node to another.

Every node here is a real ``crewboard`` process on a data home of its own
(as on separate machines: no node reads another's files), all on one fresh
PostgreSQL database per measure.

(a) ``throughput``: ``--jobs`` no-op jobs on the offline model, written at
    once, then every supervisor woken (as a web node's notification wakes
    them); jobs/s from the write to the last job done, with 1, 2 and 3
    supervisors at ``--concurrency`` each. The same workload each time.
(b) ``stream``: one supervisor on node X and a web node Y, and for
    comparison a web node on X itself. ``-n`` single-job crews, one at a
    time, each a few one-step records apart, followed from creation through
    ``GET /api/jobs/{id}/stream`` on the web node; per record, the time the
    runner wrote it (its ``ts``) → its frame reaching the client. p50 and
    p99 over every record. A record that never arrives is counted, not
    timed: where web nodes read run logs only from their own home, nothing
    crosses.

Usage: ``.venv/bin/python bench/multi_supervisor.py [--jobs 300]
[--concurrency 4] [-n 20] [--server postgresql://postgres@127.0.0.1:5432]
[--only throughput|stream] [--out FILE.json]``; with ``--only``, the other
measure's results already in ``--out`` are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg2

from crewboard.board import db
from crewboard.board import jobs as board_jobs
from crewboard.board import users as board_users
from crewboard.board.models import Heartbeat, Job, JobStatus, Run
from crewboard.clock import utcnow
from crewboard.home import Home
from crewboard.wakeup import JOBS, wake_supervisor
from dispatch import plan, wait
from percentiles import pct
from processes_env import crewboard_env

SERVER = "postgresql://postgres@127.0.0.1:5432"
# A job whose runner writes a record about every 0.2 s: its prompt, five tool
# steps (call and result), its answer.
STEPPED = "\n".join(["Stream in steps."] + ["/sleep 0.2", "/tool list_files {}"] * 5)


def admin_sql(server: str, sql: str) -> None:
    conn = psycopg2.connect(f"{server}/postgres", connect_timeout=3)
    conn.autocommit = True
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


@contextmanager
def fresh_board(server: str):
    """A new database on ``server``, migrated and bound to the models here;
    dropped afterwards. Yields its URL."""
    name = f"crewboard_bench_{uuid.uuid4().hex[:10]}"
    admin_sql(server, f"CREATE DATABASE {name}")
    url = f"{server}/{name}"
    try:
        db.connect(url=url)
        yield url
    finally:
        db.close()
        admin_sql(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Node:
    """One crewboard process (``supervisor`` or ``web``) on a home of its own."""

    def __init__(
        self, work: Path, name: str, command: str, url: str, home: str = "", **settings: str
    ) -> None:
        """``home``: the folder under ``work`` of its home (default: ``name``),
        which a web node shares with a supervisor to play one machine."""
        self.home = Home(work / (home or name))
        self.command = command
        self.home.root.mkdir(parents=True, exist_ok=True)
        env = crewboard_env(
            self.home.root, CREWBOARD_DATABASE_URL=url, CREWBOARD_LOG_LEVEL="WARNING", **settings
        )
        self.log = open(work / f"{name}.log", "wb")  # noqa: SIM115
        argv = [sys.executable, "-m", "crewboard", command, "--home", str(self.home.root)]
        if command == "web":
            argv += ["--port", "0"]
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_ready(self) -> None:
        """Until the web node has written its URL, or the supervisor bound its socket."""
        ready = self.home.run_dir / "web.json" if self.command == "web" else self.home.wake_socket
        wait(lambda: ready.exists() or self.proc.poll() is not None, timeout_s=60, every_s=0.05)
        if self.proc.poll() is not None:
            raise SystemExit(f"{self.home.root.name} did not start: see {self.log.name}")

    @property
    def url(self) -> str:
        return json.loads((self.home.run_dir / "web.json").read_text())["url"].rstrip("/")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@contextmanager
def nodes(work: Path, url: str, specs: list[tuple[str, str, str]], **settings: str):
    """Start ``(name, command, home)`` nodes on the board at ``url``; all ready."""
    with ExitStack() as stack:
        started = []
        for name, command, home in specs:
            node = Node(work, name, command, url, home, **settings)
            stack.callback(node.close)
            started.append(node)
        for node in started:
            node.wait_ready()
        yield started


def throughput(server: str, supervisors: int, n_jobs: int, concurrency: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="crewboard-multi-"))
    load = os.getloadavg()[0]
    try:
        with fresh_board(server) as url:
            owner = board_users.create_user("bench@example.test", None, now=utcnow()).id
            specs = [(f"sup-{i}", "supervisor", "") for i in range(supervisors)]
            with nodes(work, url, specs, CREWBOARD_CONCURRENCY=str(concurrency)) as sups:
                wait(lambda: Heartbeat.select().count() >= supervisors, timeout_s=60, every_s=0.05)
                started = time.perf_counter()
                board_jobs.create_crew(plan(n_jobs), owner, now=utcnow())
                for sup in sups:
                    wake_supervisor(sup.home, JOBS)
                wait(
                    lambda: Job.select().where(Job.status == JobStatus.DONE).count() == n_jobs,
                    timeout_s=900,
                    every_s=0.05,
                )
                wall_s = time.perf_counter() - started
                runs = list(Run.select())
                per_supervisor: dict[str, int] = {}
                for run in runs:
                    per_supervisor[run.supervisor_id] = per_supervisor.get(run.supervisor_id, 0) + 1
        return {
            "supervisors": supervisors,
            "concurrency": concurrency,
            "jobs": n_jobs,
            "runs": len(runs),
            "not_succeeded": sum(1 for r in runs if r.outcome != "succeeded"),
            "runs_per_supervisor": sorted(per_supervisor.values()),
            "wall_s": round(wall_s, 2),
            "jobs_per_s": round(n_jobs / wall_s, 1),
            "loadavg_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def record_time(data: dict) -> float:
    return datetime.fromisoformat(str(data["ts"]).replace("Z", "+00:00")).timestamp()


def follow_job(client: httpx.Client, job_id: int) -> tuple[list[float], int]:
    """Per frame of the job's run, its record's time → now (s); and how many
    records the run's log holds."""
    delays = []
    with client.stream("GET", f"/api/jobs/{job_id}/stream", timeout=60) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            frame = json.loads(line[5:])
            if frame["type"] == "done":
                break
            delays.append(time.time() - record_time(frame["data"]))
    run = Run.select().where(Run.job == job_id).order_by(Run.id.desc()).get()
    return delays, run.id


def stream_latency(server: str, n: int) -> dict[str, Any]:
    """Record on node X → frame from a web node on Y, and from one on X."""
    work = Path(tempfile.mkdtemp(prefix="crewboard-multi-stream-"))
    load = os.getloadavg()[0]
    result: dict[str, Any] = {}
    try:
        with fresh_board(server) as url:
            user = board_users.create_user("bench@example.test", None, now=utcnow())
            _, token = board_users.create_token(user.id, "bench", now=utcnow())
            # The web node on X shares the supervisor's home, as on one machine.
            specs = [
                ("x-supervisor", "supervisor", "x"),
                ("x-web", "web", "x"),
                ("y-web", "web", "y"),
            ]
            with nodes(work, url, specs) as (sup, web_x, web_y):
                headers = {"Authorization": f"Bearer {token}"}
                for label, web in (("same node", web_x), ("across nodes", web_y)):
                    delays: list[float] = []
                    records = 0
                    with httpx.Client(base_url=web.url, headers=headers, timeout=30) as client:
                        for _ in range(n):
                            _, (job,) = board_jobs.create_crew(
                                plan(1, STEPPED), user.id, now=utcnow()
                            )
                            wake_supervisor(sup.home, JOBS)
                            got, run_id = follow_job(client, job.id)
                            delays += got
                            log = sup.home.run_log(run_id)
                            records += sum(1 for _ in log.open()) if log.exists() else 0
                    ms = [d * 1000 for d in delays]
                    result[label] = {
                        "records": records,
                        "frames": len(ms),
                        "p50_ms": round(pct(ms, 50), 1) if ms else None,
                        "p99_ms": round(pct(ms, 99), 1) if ms else None,
                    }
        result["loadavg_1m"] = [round(load, 2), round(os.getloadavg()[0], 2)]
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary table's rows (see run_all.py)."""
    out = []
    runs = result.get("throughput") or []
    if runs:
        one = runs[0]
        load = [x for r in runs for x in r["loadavg_1m"]]
        for run in runs[1:]:
            out.append(
                {
                    "measure": (
                        f"{run['jobs']} no-op jobs, jobs/s, {run['supervisors']} supervisors "
                        f"on one PostgreSQL board (concurrency {run['concurrency']} each)"
                    ),
                    "crewboard": f"{run['jobs_per_s']:.1f}",
                    "peer": f"1 supervisor: {one['jobs_per_s']:.1f}",
                    "ratio": round(run["jobs_per_s"] / one["jobs_per_s"], 2),
                    "target": None,
                    "loadavg": f"{min(load):.1f}–{max(load):.1f}",
                    "bench": "multi_supervisor.py",
                }
            )
    stream = result.get("stream")
    if stream:
        across, same = stream["across nodes"], stream["same node"]
        load = stream["loadavg_1m"]
        for q in ("p50", "p99"):
            ours, theirs = across[f"{q}_ms"], same[f"{q}_ms"]
            out.append(
                {
                    "measure": (
                        f"record on host X → frame from web node Y {q}, ms "
                        f"({across['frames']} of {across['records']} records arrived)"
                    ),
                    "crewboard": "none arrived" if ours is None else f"{ours:.1f}",
                    "peer": f"web node on X: {theirs if theirs is not None else 'none'}",
                    "ratio": round(ours / theirs, 2) if ours is not None and theirs else "–",
                    "target": None,
                    "loadavg": f"{min(load):.1f}–{max(load):.1f}",
                    "bench": "multi_supervisor.py",
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("-n", type=int, default=20, help="jobs followed for the stream latency")
    parser.add_argument("--server", default=os.environ.get("CREWBOARD_BENCH_PG", SERVER))
    parser.add_argument("--only", choices=("throughput", "stream"))
    parser.add_argument("--out", help="also write the results here as JSON")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    if args.only and args.out and Path(args.out).exists():
        # The measure not run this time keeps its earlier results.
        result = json.loads(Path(args.out).read_text())
    result.update(time=time.strftime("%Y-%m-%dT%H:%M:%S%z"), nproc=os.cpu_count())
    if args.only != "stream":
        result["throughput"] = []
        for supervisors in (1, 2, 3):
            result["throughput"].append(
                throughput(args.server, supervisors, args.jobs, args.concurrency)
            )
            print(json.dumps(result["throughput"][-1]), flush=True)
    if args.only != "throughput":
        result["stream"] = stream_latency(args.server, args.n)
        print(json.dumps(result["stream"]), flush=True)
    result["rows"] = rows(result)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    for row in result["rows"]:
        print(f"{row['measure']}: {row['crewboard']} vs {row['peer']} → {row['ratio']}")


if __name__ == "__main__":
    main()
