"""Benchmark: one running job watched by many streams at once.

A real ``crewboard web`` process serves a fresh home in which one job is
running (claimed through :func:`crewboard.board.dispatch.claim_ready_job`, as
the supervisor would). This script plays the runner and the audience: it
opens ``--subscribers`` ``GET /api/jobs/{id}/stream`` connections on plain
trio sockets (one process, no HTTP library: a subscriber is a socket and a
byte scan), waits until every one has the run's first frame, then appends
``--records`` log records ``--interval-ms`` apart, each carrying a mark, and
notes when each subscriber receives each mark.

Reported: append → receipt latency over every (subscriber, record) pair
(p50, p99, max), the time for a record to reach the *last* subscriber, and
the web process's resident memory (idle, with every stream open, peak).
Finally the run ends, and every stream must end with ``done``.

Usage: ``.venv/bin/python bench/sse_fanout.py [--subscribers 1000]
[--records 100] [--interval-ms 100] [--out FILE.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from crewboard.board import db, dispatch
from crewboard.board import jobs as board_jobs
from crewboard.board import users as board_users
from crewboard.board.models import RunOutcome
from crewboard.clock import utcnow
from crewboard.home import Home
from crewboard.sessionlog import LogWriter
from crewboard.workflows.templates import CrewPlan, PlannedJob
from percentiles import pct
from processes_env import crewboard_env

MARK = re.compile(rb'"mark":(\d+)')
DONE = b'"type":"done"'
CONNECT_AT_ONCE = 50


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of ``pid`` in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def prepare(home_dir: Path) -> tuple[Home, str, int, int]:
    """A home with a user, an API token and one running job; returns the
    token, the job id and the run id."""
    home = Home(home_dir).ensure()
    home.secret_key()
    db.connect(home.board_db)
    user = board_users.create_user("watcher@example.test", None, is_admin=False, now=utcnow())
    _, token = board_users.create_token(user.id, "bench", now=utcnow())
    plan = CrewPlan(
        "bench",
        "fan-out",
        {},
        (PlannedJob("only", "watched job", "assistant", "Say a lot.", (), None, 600, 0),),
    )
    _, (job,) = board_jobs.create_crew(plan, user.id, now=utcnow())
    claim = dispatch.claim_ready_job("bench-supervisor", home.run_log, now=utcnow())
    assert claim is not None and claim.job_id == job.id
    return home, token, job.id, claim.run_id


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_s(pid: int) -> float:
    return sum(cpu_times(pid))


# ``crewboard web`` with its cyclic GC tuned, to measure what that changes:
# what the imports built is frozen out of full collections, and the youngest
# generation is collected less often, so the objects a thousand idle streams
# hold between records are not promoted into (and walked by) full passes.
TUNED_WEB = """
import gc, sys
import crewboard.cli, crewboard.web.app, crewboard.web.server
gc.collect()
gc.freeze()
gc.set_threshold(10_000, 10, 10)
sys.exit(crewboard.cli.main(sys.argv[1:]))
"""


def start_web(
    home_dir: Path, log_file: Path, *, tune_gc: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    env = crewboard_env(home_dir, CREWBOARD_HOME=str(home_dir), CREWBOARD_PORT="0")
    program = ["-c", TUNED_WEB] if tune_gc else ["-m", "crewboard"]
    process = subprocess.Popen(
        [sys.executable, *program, "web", "--home", str(home_dir), "--port", "0"],
        env=env,
        stdout=log_file.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url_file = home_dir / "run" / "web.json"
    deadline = time.monotonic() + 30
    while not url_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the web process did not start; see {log_file}")
        time.sleep(0.05)
    return process, json.loads(url_file.read_text())["url"].rstrip("/")


class Subscriber:
    def __init__(self) -> None:
        self.received: dict[int, float] = {}
        self.first_frame = trio.Event()
        self.done = trio.Event()


async def subscribe(
    host: str, port: int, request: bytes, sub: Subscriber, ready: trio.Semaphore
) -> None:
    async with ready:
        stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(request)
        tail = b""
        while True:
            data = await stream.receive_some(65536)
            now = time.perf_counter()
            if not data:
                return
            if not sub.first_frame.is_set() and b"user_message" in data:
                sub.first_frame.set()
            chunk = tail + data
            for match in MARK.finditer(chunk):
                sub.received.setdefault(int(match[1]), now)
            if DONE in chunk:
                sub.done.set()
                return
            tail = chunk[-64:]


async def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="crewboard-fanout-"))
    home, token, job_id, run_id = prepare(work / "home")
    web, url = start_web(work / "home", work / "web.log", tune_gc=args.tune_gc)
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    try:
        writer = LogWriter(home.run_log(run_id))
        writer.append("user_message", text="Say a lot.")
        idle_rss, _ = rss_mib(web.pid)
        request = (
            f"GET /api/jobs/{job_id}/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        subs = [Subscriber() for _ in range(args.subscribers)]
        sent: dict[int, float] = {}
        result: dict = {}
        async with trio.open_nursery() as nursery:
            gate = trio.Semaphore(CONNECT_AT_ONCE)
            t0 = time.perf_counter()
            for sub in subs:
                nursery.start_soon(subscribe, host, int(port), request, sub, gate)
            with trio.fail_after(120):
                for sub in subs:
                    await sub.first_frame.wait()
            connect_s = time.perf_counter() - t0
            connected_rss, _ = rss_mib(web.pid)
            idle_before = cpu_s(web.pid)
            await trio.sleep(3.0)
            idle_cpu_pct = (cpu_s(web.pid) - idle_before) / 3.0 * 100
            cpu_before = cpu_s(web.pid)
            user_before, _ = cpu_times(web.pid)
            client_before = cpu_s(os.getpid())
            for mark in range(args.records):
                sent[mark] = time.perf_counter()
                writer.append("text", agentName="assistant", text="tick", mark=mark)
                await trio.sleep(args.interval_ms / 1000)
            await trio.sleep(1.0)
            cpu_per_record_ms = (cpu_s(web.pid) - cpu_before) * 1000 / args.records
            user_per_record_ms = (cpu_times(web.pid)[0] - user_before) * 1000 / args.records
            client_per_record_ms = (cpu_s(os.getpid()) - client_before) * 1000 / args.records
            streaming_rss, peak_rss = rss_mib(web.pid)
            writer.append("final_result", agentName="assistant", text="done")
            writer.close()
            await trio.to_thread.run_sync(
                lambda: dispatch.finish_run(
                    run_id, RunOutcome.SUCCEEDED, exit_code=0, result="done", now=utcnow()
                )
            )
            with trio.fail_after(30):
                for sub in subs:
                    await sub.done.wait()
            _, peak_rss = rss_mib(web.pid)
        latencies = [
            (sub.received[mark] - sent[mark]) * 1000
            for sub in subs
            for mark in sent
            if mark in sub.received
        ]
        last_receipt = [
            (max(sub.received[mark] for sub in subs) - sent[mark]) * 1000 for mark in sent
        ]
        missing = args.subscribers * args.records - len(latencies)
        result = {
            "subscribers": args.subscribers,
            "records": args.records,
            "intervalMs": args.interval_ms,
            "connectAllS": round(connect_s, 2),
            "latencyMs": {
                "p50": round(pct(latencies, 50), 1),
                "p99": round(pct(latencies, 99), 1),
                "max": round(max(latencies), 1),
            },
            "lastSubscriberMs": {
                "p50": round(pct(last_receipt, 50), 1),
                "p99": round(pct(last_receipt, 99), 1),
            },
            "webIdleCpuPercent": round(idle_cpu_pct, 1),
            "webCpuMsPerRecord": round(cpu_per_record_ms, 1),
            "webUserCpuMsPerRecord": round(user_per_record_ms, 1),
            "clientCpuMsPerRecord": round(client_per_record_ms, 1),
            "missing": missing,
            "perMarkLastMs": [round(x, 1) for x in last_receipt] if args.verbose else None,
            "allDone": all(sub.done.is_set() for sub in subs),
            "webRssMiB": {
                "idle": round(idle_rss, 1),
                "connected": round(connected_rss, 1),
                "streaming": round(streaming_rss, 1),
                "peak": round(peak_rss, 1),
            },
            "tunedGc": args.tune_gc,
            "loadAverage": os.getloadavg()[0],
            "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        }
        return result
    finally:
        web.terminate()
        web.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--interval-ms", type=float, default=100.0)
    parser.add_argument(
        "--tune-gc",
        action="store_true",
        help="run the web process with its GC tuned (see TUNED_WEB)",
    )
    parser.add_argument("--verbose", action="store_true", help="per-record timings too")
    parser.add_argument("--out", help="also write the result as JSON to this file")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 2 * args.subscribers + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    result = trio.run(run, args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
