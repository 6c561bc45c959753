"""Benchmark: the board's CPU per job, transition by transition, beside the
raw-SQL floor, and the fair-share claim query at 1k and 100k ready jobs.

(a) ``ops``: a fresh home on SQLite (WAL, ``synchronous=normal``, as the
    board runs). For each of ``-n`` jobs, in the order the supervisor does
    them and in this process: ``create_crew`` (one job, what ``POST
    /api/jobs`` writes), the dispatch round's first look (promotion and
    cancel checks), the claim, ``set_run_pid``, ``finish_run`` (succeeded,
    which also promotes children), and the round's closing outlook. Each is
    timed in CPU (``time.process_time``; SQLite runs in this process, so its
    work is counted) and in wall time. Beside it, in the same run,
    ``sqlite_floor.py`` of ``shared/bench-peers``: the same three-transaction
    lifecycle (enqueue, claim, finish) in raw SQL on a bare table.
(b) ``claim-scale``: the claim's pick (the oldest ready job of the next
    owner in turn) against the plain oldest-first pick it replaced, on
    boards holding 1k and 100k ready jobs spread over ``--owners`` users.

Usage: ``.venv/bin/python bench/board_ops.py [-n 500] [--reps 3] [--owners 20]
[--only ops|claim-scale] [--peers DIR] [--out FILE.json]``. ``--peers`` is
the checkout of ``bench-peers`` (default: ``$CREWBOARD_BENCH_PEERS``, else
``shared/bench-peers`` next to or above this repository).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from crewboard.board import db, dispatch
from crewboard.board import jobs as board_jobs
from crewboard.board.models import Job, RunOutcome, User
from crewboard.clock import utcnow
from crewboard.home import Home
from dispatch import plan as crew_plan

OPS = ("create_crew", "round_look", "claim", "set_run_pid", "finish_run", "outlook")

# The pick the claim used before fair share: the oldest claimable job of all.
OLDEST_FIRST = """
SELECT id FROM job
WHERE status = 'ready' AND available_at <= ? AND cancel_requested = FALSE
ORDER BY id LIMIT 1
"""


def find_peers(given: str | None) -> Path | None:
    here = Path(__file__).resolve().parent.parent
    candidates = [given, os.environ.get("CREWBOARD_BENCH_PEERS")]
    candidates += [str(up / "shared" / "bench-peers") for up in here.parents]
    for candidate in candidates:
        if candidate and (Path(candidate) / "sqlite_floor.py").is_file():
            return Path(candidate)
    return None


def fresh_home(root: Path) -> tuple[Home, int]:
    home = Home(root / "home")
    db.connect(home.board_db)
    owner = User.create(email="bench@localhost", name="bench", created_at=utcnow()).id
    return home, owner


def timed(samples: dict[str, list[tuple[float, float]]], name: str, fn: Callable[[], Any]) -> Any:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    value = fn()
    samples[name].append((time.process_time() - cpu0, time.perf_counter() - wall0))
    return value


def bench_ops(n: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="crewboard-board-ops-"))
    try:
        home, owner = fresh_home(root)
        samples: dict[str, list[tuple[float, float]]] = {op: [] for op in OPS}
        plan = crew_plan(1, "Say nothing.")
        for _ in range(n):
            timed(samples, "create_crew", lambda: board_jobs.create_crew(plan, owner, now=utcnow()))
            timed(
                samples,
                "round_look",
                lambda: (dispatch.promote_waiting(now=utcnow()), dispatch.runs_to_cancel("bench")),
            )
            (claim,) = timed(
                samples,
                "claim",
                lambda: dispatch.claim_ready_jobs("bench", home.run_log, limit=4, now=utcnow()),
            )
            run_id = claim.run_id
            timed(
                samples,
                "set_run_pid",
                partial(dispatch.set_run_pid, run_id, os.getpid(), now=utcnow()),
            )
            timed(
                samples,
                "finish_run",
                partial(
                    dispatch.finish_run,
                    run_id,
                    RunOutcome.SUCCEEDED,
                    exit_code=0,
                    result="ok",
                    now=utcnow(),
                ),
            )
            timed(samples, "outlook", lambda: dispatch.outlook(now=utcnow()))
        db.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result: dict[str, Any] = {"jobs": n}
    for op, values in samples.items():
        result[op] = {
            "cpu_ms": round(statistics.fmean(c for c, _ in values) * 1000, 3),
            "wall_ms": round(statistics.fmean(w for _, w in values) * 1000, 3),
        }
    result["per_job_cpu_ms"] = round(sum(result[op]["cpu_ms"] for op in OPS), 3)
    result["per_job_wall_ms"] = round(sum(result[op]["wall_ms"] for op in OPS), 3)
    return result


def bench_floor(peers: Path, n: int) -> dict[str, Any]:
    """sqlite_floor.py's WAL/NORMAL lifecycle, its CPU measured around it."""
    sys.path.insert(0, str(peers))
    os.environ.setdefault("PEERS_ROOT", tempfile.mkdtemp(prefix="crewboard-floor-"))
    floor = importlib.import_module("sqlite_floor")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    rec = floor.one_rep("WAL", "NORMAL", n)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "jobs": n,
        "per_job_cpu_ms": round(cpu / n * 1000, 3),
        "per_job_wall_ms": round(wall / n * 1000, 3),
        "lifecycles_per_s": round(rec["lifecycles_per_s"], 1),
    }


def fill_ready(total: int, owners: list[int]) -> None:
    """``total`` ready one-job crews, owners taking turns, inserted in bulk."""
    now = Job.created_at.db_value(utcnow())
    conn = db.database.connection()
    with db.database.atomic():
        crew_id = db.execute(
            "INSERT INTO crew (template_id, title, inputs, owner_id, created_at) "
            "VALUES ('bench', 'bench', '{}', ?, ?) RETURNING id",
            (owners[0], now),
        ).fetchone()[0]
        conn.executemany(
            "INSERT INTO job (crew_id, owner_id, key, title, agent, prompt, status, available_at,"
            " timeout_s, max_retries, attempts, interruptions, cancel_requested, created_at,"
            " updated_at) VALUES (?, ?, 'k', 't', 'assistant', 'p', 'ready', ?, 600, 0, 0, 0, 0,"
            " ?, ?)",
            ((crew_id, owners[i % len(owners)], now, now, now) for i in range(total)),
        )


def time_query(sql: str, params: tuple[Any, ...], reps: int = 200) -> float:
    """Median CPU ms of one run of ``sql`` (fetching its row)."""
    cursor = db.database.connection().cursor()
    values = []
    for _ in range(reps):
        cpu0 = time.process_time()
        cursor.execute(sql, params).fetchall()
        values.append(time.process_time() - cpu0)
    return round(statistics.median(values) * 1000, 4)


def bench_claim_scale(owners_n: int) -> list[dict[str, Any]]:
    rows = []
    for total in (1_000, 100_000):
        root = Path(tempfile.mkdtemp(prefix="crewboard-claim-scale-"))
        try:
            _, first = fresh_home(root)
            owners = [first] + [
                User.create(email=f"u{i}@localhost", name=f"u{i}", created_at=utcnow()).id
                for i in range(1, owners_n)
            ]
            fill_ready(total, owners)
            now = Job.created_at.db_value(utcnow())
            pick = dispatch._pick_next_sql(False, True)
            capped = dispatch._pick_next_sql(True, True)
            rows.append(
                {
                    "ready_jobs": total,
                    "owners": owners_n,
                    "oldest_first_ms": time_query(OLDEST_FIRST, (now,)),
                    "round_robin_ms": time_query(pick, (now, owners[-1])),
                    "round_robin_capped_ms": time_query(capped, (now, 4, owners[-1])),
                    "outlook_ms": time_query(dispatch._OUTLOOK, (now, now, now), reps=20),
                }
            )
            db.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return rows


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary table's rows (see run_all.py)."""
    load = "–".join(f"{result[k][0]:.1f}" for k in ("loadavg_at_start", "loadavg_at_end"))
    out = []
    if result.get("ops") and result.get("floor"):
        ours = statistics.median(r["per_job_cpu_ms"] for r in result["ops"])
        floor = statistics.median(f["per_job_cpu_ms"] for f in result["floor"])
        steps = ", ".join(
            f"{op} {statistics.median(r[op]['cpu_ms'] for r in result['ops']):.2f}" for op in OPS
        )
        out.append(
            {
                "measure": f"board CPU per job, ms, in-process ({steps})",
                "crewboard": f"{ours:.2f}",
                "peer": f"raw-SQL lifecycle (sqlite_floor.py): {floor:.2f}",
                "ratio": round(ours / floor, 2),
                "target": "crewboard ≤ 2 ms",
                "loadavg": load,
                "bench": "board_ops.py",
            }
        )
    for row in result.get("claim_scale", []):
        out.append(
            {
                "measure": f"claim's pick, CPU ms, {row['ready_jobs']:,} ready jobs "
                f"of {row['owners']} users (round-robin)",
                "crewboard": f"{row['round_robin_ms']:.3f}",
                "peer": f"the oldest-first pick it replaced: {row['oldest_first_ms']:.3f}",
                "ratio": round(row["round_robin_ms"] / row["oldest_first_ms"], 3),
                "target": "≤ 1 (as fast as before)",
                "loadavg": load,
                "bench": "board_ops.py",
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=500, help="jobs per rep")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--owners", type=int, default=20)
    parser.add_argument("--only", choices=("ops", "claim-scale"))
    parser.add_argument("--peers", help="the bench-peers checkout (for sqlite_floor.py)")
    parser.add_argument("--out", help="also write the results here as JSON")
    args = parser.parse_args()
    result: dict[str, Any] = {"loadavg_at_start": os.getloadavg()}
    if args.only != "claim-scale":
        peers = find_peers(args.peers)
        reps, floors = [], []
        for _ in range(args.reps):
            reps.append(bench_ops(args.n))
            if peers is not None:
                floors.append(bench_floor(peers, args.n))
        result["ops"] = reps
        result["floor"] = floors
        for op in OPS:
            cpu = statistics.median(r[op]["cpu_ms"] for r in reps)
            print(f"{op:12s} {cpu:7.3f} ms CPU per job (median of {args.reps} reps)")
        per_job = statistics.median(r["per_job_cpu_ms"] for r in reps)
        print(f"{'per job':12s} {per_job:7.3f} ms CPU")
        if floors:
            floor_cpu = statistics.median(f["per_job_cpu_ms"] for f in floors)
            print(f"{'raw floor':12s} {floor_cpu:7.3f} ms CPU per lifecycle (sqlite_floor.py)")
    if args.only != "ops":
        result["claim_scale"] = bench_claim_scale(args.owners)
        for row in result["claim_scale"]:
            print(json.dumps(row))
    result["loadavg_at_end"] = os.getloadavg()
    result["rows"] = rows(result)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
