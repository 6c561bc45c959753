"""Benchmark: does a run streaming a large output slow the web for everyone else?

A real ``crewboard web`` process serves a fresh home. Each round, this script
first times ``GET /auth/me`` on an idle server, then plays a model that
streams ``--mb`` MiB of text into a running job (text deltas of
``--delta-kib`` KiB appended to the run's log as fast as the disk takes
them, then a ``final_result`` of ``--result-kib`` KiB, by default the
runner's 1 MiB result cap) while one client follows the job's stream, and
times ``/auth/me`` again the whole time. Idle and loaded phases alternate
round by round, so drift on a shared machine hits both alike.

Reported per round: ``/auth/me`` p50 and p99 idle and under load and their
ratios; overall, the median of the per-round ratios, the load average, and
whether every stream ended with ``done``. A ratio near 1 means the web stays
as fast as before within noise.

Usage: ``.venv/bin/python bench/large_output.py [--rounds 5] [--mb 20]
[--delta-kib 4] [--result-kib 1024] [--out FILE.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
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
from sse_fanout import rss_mib, start_web

PROBE_EVERY_S = 0.02
IDLE_S = 3.0


def prepare(home_dir: Path) -> tuple[Home, int, str]:
    home = Home(home_dir).ensure()
    home.secret_key()
    db.connect(home.board_db)
    user = board_users.create_user("reader@example.test", None, is_admin=False, now=utcnow())
    _, token = board_users.create_token(user.id, "bench", now=utcnow())
    return home, user.id, token


def new_run(home: Home, user_id: int) -> tuple[int, int]:
    """A job of one running run, as the supervisor would claim it."""
    plan = CrewPlan(
        "bench",
        "large output",
        {},
        (PlannedJob("only", "says a lot", "assistant", "Say a lot.", (), None, 600, 0),),
    )
    _, (job,) = board_jobs.create_crew(plan, user_id, now=utcnow())
    claim = dispatch.claim_ready_job("bench-supervisor", home.run_log, now=utcnow())
    assert claim is not None and claim.job_id == job.id
    return job.id, claim.run_id


async def probe(client: httpx.AsyncClient, until: trio.Event, into: list[float]) -> None:
    while not until.is_set():
        t0 = time.perf_counter()
        response = await client.get("/auth/me")
        into.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.text
        await trio.sleep(PROBE_EVERY_S)


async def follow(client: httpx.AsyncClient, job_id: int, done: trio.Event) -> int:
    received = 0
    async with client.stream("GET", f"/api/jobs/{job_id}/stream") as response:
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            if b'"type":"done"' in chunk:
                done.set()
                break
    return received


def stream_output(home: Home, run_id: int, args: argparse.Namespace) -> None:
    """Play the runner of a model streaming ``args.mb`` MiB (in a process of
    its own, as a runner is: see ``--play-run``)."""
    delta = "word " * (args.delta_kib * 1024 // 5)
    deltas = args.mb * 1024 // args.delta_kib
    with LogWriter(home.run_log(run_id)) as writer:
        writer.append("user_message", text="Say a lot.")
        writer.append("agent_start", agentName="assistant")
        for _ in range(deltas):
            writer.append("text", agentName="assistant", text=delta)
        writer.append("agent_end", agentName="assistant")
        result = "A paragraph of *the* answer.\n\n" * (args.result_kib * 1024 // 30)
        writer.append("final_result", agentName="assistant", text=result)
    dispatch.finish_run(run_id, RunOutcome.SUCCEEDED, exit_code=0, result="said", now=utcnow())


async def one_round(
    client: httpx.AsyncClient, home: Home, user_id: int, args: argparse.Namespace
) -> dict:
    idle: list[float] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe, client, stop, idle)
        await trio.sleep(IDLE_S)
        stop.set()

    job_id, run_id = await trio.to_thread.run_sync(new_run, home, user_id)
    loaded: list[float] = []
    done = trio.Event()
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe, client, done, loaded)
        nursery.start_soon(follow, client, job_id, done)
        command = [sys.executable, __file__, "--play-run", str(home.root), str(run_id)]
        command += ["--mb", str(args.mb), "--delta-kib", str(args.delta_kib)]
        command += ["--result-kib", str(args.result_kib)]
        await trio.run_process(command)
        with trio.fail_after(300):
            await done.wait()
    return {
        "idleMs": {"p50": round(pct(idle, 50), 2), "p99": round(pct(idle, 99), 2)},
        "loadedMs": {"p50": round(pct(loaded, 50), 2), "p99": round(pct(loaded, 99), 2)},
        "loadedMaxMs": round(max(loaded), 1),
        "p50Ratio": round(pct(loaded, 50) / pct(idle, 50), 2),
        "p99Ratio": round(pct(loaded, 99) / pct(idle, 99), 2),
        "streamedS": round(time.perf_counter() - t0, 1),
        "probes": [len(idle), len(loaded)],
        "done": done.is_set(),
    }


async def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="crewboard-large-output-"))
    home, user_id, token = prepare(work / "home")
    web, url = start_web(work / "home", work / "web.log")
    rounds = []
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
            for _ in range(args.warmup):
                await client.get("/auth/me")
            for n in range(args.rounds):
                rounds.append(await one_round(client, home, user_id, args))
                print(f"round {n + 1}: {json.dumps(rounds[-1])}", flush=True)
        _, peak_rss = rss_mib(web.pid)
    finally:
        web.terminate()
        web.wait(10)
    return {
        "mb": args.mb,
        "deltaKiB": args.delta_kib,
        "resultKiB": args.result_kib,
        "rounds": rounds,
        "medianP50Ratio": statistics.median(r["p50Ratio"] for r in rounds),
        "medianP99Ratio": statistics.median(r["p99Ratio"] for r in rounds),
        "allDone": all(r["done"] for r in rounds),
        "webPeakRssMiB": round(peak_rss, 1),
        "loadAverage": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mb", type=int, default=20)
    parser.add_argument("--delta-kib", type=int, default=4)
    parser.add_argument("--result-kib", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", help="also write the result as JSON to this file")
    parser.add_argument("--play-run", nargs=2, metavar=("HOME", "RUN_ID"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.play_run:
        home = Home(Path(args.play_run[0]))
        db.connect(home.board_db)
        stream_output(home, int(args.play_run[1]), args)
        return
    report = json.dumps(trio.run(run, args), indent=2) + "\n"
    sys.stdout.write(report)
    if args.out:
        Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
