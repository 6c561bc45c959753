"""Benchmark: how fast the supervisor turns a new job into a running runner,
and how many no-op jobs it gets through.

A real ``crewboard supervisor`` process runs on a fresh home (default
settings: poll 1 s, heartbeat 2 s), and this script plays the web process:
it writes jobs with :func:`crewboard.board.jobs.create_crew` and then calls
:func:`crewboard.wakeup.wake_supervisor`, exactly what ``POST /api/jobs``
does after planning the crew from its template.

(a) ``latency``: on an idle board, one single-job crew at a time; for each,
    job creation → dispatch (the claim's event), → the runner's first log
    line (its ``user_message`` record), → job done. p50/p90 over ``-n`` jobs.
(b) ``throughput``: ``--jobs`` no-op jobs written at once, at
    ``--concurrency``; jobs/s from the wake-up to the last job done.

Runners are forked from the supervisor's pre-imported template, as in
production; ``--spawn`` runs a supervisor that starts each runner as a fresh
interpreter instead, for comparison.

Usage: ``.venv/bin/python bench/dispatch.py [-n 50] [--jobs 500] [--concurrency 4]
[--reps 3] [--spawn] [--only latency|throughput] [--out FILE.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from crewboard.board import db
from crewboard.board import jobs as board_jobs
from crewboard.board.models import Event, Heartbeat, Job, JobStatus, Run, User
from crewboard.clock import parse_iso, utcnow
from crewboard.home import Home
from crewboard.wakeup import JOBS, wake_supervisor
from crewboard.workflows.templates import CrewPlan, PlannedJob
from percentiles import pct
from processes_env import crewboard_env

# ``crewboard supervisor`` with every runner a fresh interpreter (no template).
SPAWNING_SUPERVISOR = """
import sys, trio
from crewboard.config import Config
from crewboard.supervisor.main import run_supervisor
trio.run(lambda: run_supervisor(Config.load(sys.argv[1]), forkserver=False))
"""


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "p50": round(pct(ms, 50), 1),
        "p90": round(pct(ms, 90), 1),
        "min": round(min(ms), 1),
        "max": round(max(ms), 1),
    }


def plan(n_jobs: int, prompt: str = "A no-op job.") -> CrewPlan:
    jobs = tuple(
        PlannedJob(
            key=f"j{i}",
            title=f"job {i}",
            agent="assistant",
            prompt=prompt,
            needs=(),
            artifact=None,
            timeout_s=600,
            retries=0,
        )
        for i in range(n_jobs)
    )
    return CrewPlan(template_id="bench", title="bench", inputs={}, jobs=jobs)


class Supervisor:
    """A ``crewboard supervisor`` process on its own fresh home."""

    def __init__(self, concurrency: int, forkserver: bool = True) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="crewboard-bench-"))
        self.home = Home(self.root / "home")
        env = crewboard_env(
            self.home.root, CREWBOARD_CONCURRENCY=str(concurrency), CREWBOARD_LOG_LEVEL="WARNING"
        )
        self.stderr = open(self.root / "supervisor.log", "wb")  # noqa: SIM115
        argv = [sys.executable, "-m", "crewboard", "supervisor", "--home", str(self.home.root)]
        if not forkserver:
            argv = [sys.executable, "-c", SPAWNING_SUPERVISOR, str(self.home.root)]
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.stderr,
            stderr=self.stderr,
        )
        deadline = time.monotonic() + 30
        while not self.home.wake_socket.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the supervisor did not start: see " + self.stderr.name)
            time.sleep(0.01)
        db.connect(self.home.board_db)
        self.owner = User.create(email="bench@localhost", name="bench", created_at=utcnow()).id
        wait(lambda: Heartbeat.select().exists(), timeout_s=30, every_s=0.01)

    def profile(self, out: str) -> None:
        """Sample the supervisor with py-spy (every thread, GIL holders only)
        until :meth:`close`; a flame graph goes to ``out``."""
        self.spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(self.proc.pid), "--gil", "--threads",
             "--rate", "250", "--format", "raw", "--output", out],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1)

    def close(self) -> None:
        if getattr(self, "spy", None) is not None:
            self.spy.send_signal(signal.SIGINT)
            self.spy.wait(60)
        self.proc.terminate()
        self.proc.wait(30)
        self.stderr.close()
        db.close()
        shutil.rmtree(self.root, ignore_errors=True)


def cpu_s(pid: int, children: bool = False) -> float:
    """CPU seconds a process has used (with its reaped children's, if asked)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    ticks = sum(int(x) for x in fields[11 : 15 if children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def template_pid(parent: int) -> int | None:
    """The runner template the supervisor ``parent`` started."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if ppid == parent and b"crewboard.runner.template" in cmdline:
            return int(entry)
    return None


def first_record_at(log_path: str) -> datetime | None:
    try:
        with open(log_path, "rb") as f:
            line = f.readline()
    except FileNotFoundError:
        return None
    if not line.endswith(b"\n"):
        return None
    return parse_iso(json.loads(line)["ts"])


def wait(probe, timeout_s: float = 60, every_s: float = 0.0005):
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark waited too long")
        time.sleep(every_s)


def bench_latency(n: int, forkserver: bool) -> dict[str, object]:
    sup = Supervisor(concurrency=4, forkserver=forkserver)
    try:
        to_dispatch, to_first_line, to_done = [], [], []
        for _ in range(n):
            created = utcnow()
            _, (job,) = board_jobs.create_crew(plan(1), sup.owner, now=utcnow())
            wake_supervisor(sup.home, JOBS)
            run = wait(lambda job_id=job.id: Run.get_or_none(Run.job == job_id))
            first = wait(lambda path=run.log_path: first_record_at(path))
            wait(
                lambda job_id=job.id: Job.get_by_id(job_id).status == JobStatus.DONE, every_s=0.002
            )
            dispatched = (
                Event.select()
                .where((Event.job == job.id) & (Event.kind == "dispatched"))
                .get()
                .created_at
            )
            done = Job.get_by_id(job.id).updated_at
            to_dispatch.append((dispatched - created).total_seconds())
            to_first_line.append((first - created).total_seconds())
            to_done.append((done - created).total_seconds())
            time.sleep(0.02)
        return {
            "jobs": n,
            "create_to_dispatch_ms": summary_ms(to_dispatch),
            "create_to_first_log_line_ms": summary_ms(to_first_line),
            "create_to_done_ms": summary_ms(to_done),
        }
    finally:
        sup.close()


def bench_throughput(
    n_jobs: int, concurrency: int, forkserver: bool, profile: str | None = None
) -> dict[str, object]:
    sup = Supervisor(concurrency=concurrency, forkserver=forkserver)
    try:
        if profile:
            sup.profile(profile)
        board_jobs.create_crew(plan(n_jobs), sup.owner, now=utcnow())
        template = template_pid(sup.proc.pid)
        sup_cpu0 = cpu_s(sup.proc.pid)
        runners_cpu0 = cpu_s(template, children=True) if template else 0.0
        woken_at = utcnow()
        wake_supervisor(sup.home, JOBS)
        wait(
            lambda: Job.select().where(Job.status == JobStatus.DONE).count() == n_jobs,
            timeout_s=600,
            every_s=0.05,
        )
        sup_cpu = cpu_s(sup.proc.pid) - sup_cpu0
        runners_cpu = (cpu_s(template, children=True) - runners_cpu0) if template else None
        runs = list(Run.select())
        failed = [r.id for r in runs if r.outcome != "succeeded"]
        first = min(r.started_at for r in runs)
        last = max(r.ended_at for r in runs)
        # From the wake-up to the last run's end as the board recorded it
        # (not when this loop's next look saw it: it looks every 50 ms).
        wall_s = (last - woken_at).total_seconds()
        steady_s = (last - first).total_seconds()
        durations = [r.duration_s for r in runs]
        return {
            "jobs": n_jobs,
            "concurrency": concurrency,
            "not_succeeded": len(failed),
            "wall_s": round(wall_s, 2),
            "jobs_per_s_wall": round(n_jobs / wall_s, 1),
            "jobs_per_s_steady": round(n_jobs / steady_s, 1),
            "run_duration_ms": summary_ms(durations),
            # CPU per job: the supervisor's own, and the template's with the
            # runners it forked and reaped (None when runners are spawned).
            "supervisor_cpu_ms_per_job": round(sup_cpu / n_jobs * 1000, 2),
            "runners_cpu_ms_per_job": (
                round(runners_cpu / n_jobs * 1000, 2) if runners_cpu is not None else None
            ),
            "loadavg_after": os.getloadavg(),
        }
    finally:
        sup.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=50, help="jobs for the latency bench")
    parser.add_argument("--jobs", type=int, default=500, help="jobs for the throughput bench")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", choices=("latency", "throughput"))
    parser.add_argument(
        "--spawn", action="store_true", help="no runner template: a fresh interpreter per run"
    )
    parser.add_argument("--out", help="also write the results here as JSON")
    parser.add_argument(
        "--py-spy",
        metavar="FILE",
        help="sample the throughput runs' supervisor with py-spy into FILE (collapsed stacks)",
    )
    args = parser.parse_args()
    result: dict[str, object] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "nproc": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runners": "spawned" if args.spawn else "forked from the template",
    }
    if args.only != "throughput":
        reps = [bench_latency(args.n, not args.spawn) for _ in range(args.reps)]
        result["latency"] = reps
        p50s = [r["create_to_first_log_line_ms"]["p50"] for r in reps]  # type: ignore[index]
        print(
            f"latency, creation → first log line: p50 median {statistics.median(p50s)} ms "
            f"over {args.reps} reps of {args.n}; each: "
            + "; ".join(
                f"p50 {r['create_to_first_log_line_ms']['p50']} p90 "  # type: ignore[index]
                f"{r['create_to_first_log_line_ms']['p90']}"  # type: ignore[index]
                for r in reps
            ),
            flush=True,
        )
    if args.only != "latency":
        reps = [
            bench_throughput(args.jobs, args.concurrency, not args.spawn, args.py_spy)
            for _ in range(args.reps)
        ]
        result["throughput"] = reps
        rates = [r["jobs_per_s_wall"] for r in reps]
        print(
            f"throughput, {args.jobs} no-op jobs at concurrency {args.concurrency}: "
            f"median {statistics.median(rates)} jobs/s (wall); each: {rates}",
            flush=True,
        )
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
