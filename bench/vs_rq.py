"""Benchmark: crewboard's supervisor against RQ, interleaved in one session.

Each round runs, in alternating order, crewboard's ``dispatch.py`` measures
(a real ``crewboard supervisor``, runners forked from its template) and RQ's
``rq_bench.py`` from ``shared/bench-peers`` (fork ``Worker``s on their own
redis-server), so both see the same machine:

- throughput: 500 no-op jobs written at once, crewboard at concurrency 4
  and 2, RQ with 1, 2 and 4 workers (``--burst``). crewboard's jobs/s run
  from the wake-up to the last run's end on the board; RQ's are its *steady* rate (first
  start to last end, its workers' start-up left out), the stricter
  comparison for crewboard.
- start latency: on an idle board, crewboard's job creation → the runner's
  first log line, p50; RQ's enqueue → the job function starting in its
  work-horse, p50, with one idle fork worker.

Each round's ratios are computed within the round; the summary is the
median of the per-round ratios, with the load average of every round.

Usage: ``.venv/bin/python bench/vs_rq.py [--rounds 3] [--jobs 500] [-n 40]
[--peers DIR] [--out FILE.json]``. The peers' venv must exist (``bash
setup.sh`` there); ``PEERS_ROOT`` says where (default: the temp dir's
``crewboard-peers``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from board_ops import find_peers
from dispatch import bench_latency, bench_throughput

PEERS_ROOT = Path(os.environ.get("PEERS_ROOT", Path(tempfile.gettempdir(), "crewboard-peers")))


def run_rq(peers: Path, jobs: int, idle_jobs: int, tag: str) -> dict[str, Any]:
    """One rep of RQ's fork worker: burst with 1, 2 and 4 workers, then the
    idle-worker latency; its summary."""
    python = PEERS_ROOT / "venv" / "bin" / "python"
    out = f"crewboard_vs_rq_{tag}"
    subprocess.run(
        [
            str(python),
            "rq_bench.py",
            "--classes", "fork",
            "--workers", "1,2,4",
            "--reps", "1",
            "--jobs", str(jobs),
            "--idle-jobs", str(idle_jobs),
            "--out", out,
        ],
        cwd=peers,
        env={**os.environ, "PEERS_ROOT": str(PEERS_ROOT)},
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    result = json.loads((PEERS_ROOT / "results" / f"{out}.json").read_text())
    summary = result["summary"]
    return {
        "steady_jobs_per_s": {
            w: summary["burst"][f"fork_w{w}"]["jobs_per_s_steady"]["median"] for w in (1, 2, 4)
        },
        "wall_jobs_per_s": {
            w: summary["burst"][f"fork_w{w}"]["jobs_per_s_wall"]["median"] for w in (1, 2, 4)
        },
        "enqueue_to_start_p50_ms": summary["idle"]["fork"]["enq_to_start_p50_ms"]["median"],
    }


def run_crewboard(jobs: int, n: int) -> dict[str, Any]:
    latency = bench_latency(n, forkserver=True)
    c4 = bench_throughput(jobs, 4, forkserver=True)
    c2 = bench_throughput(jobs, 2, forkserver=True)
    return {
        "first_line_p50_ms": latency["create_to_first_log_line_ms"]["p50"],  # type: ignore[index]
        "jobs_per_s": {4: c4["jobs_per_s_wall"], 2: c2["jobs_per_s_wall"]},
        "supervisor_cpu_ms_per_job": c4["supervisor_cpu_ms_per_job"],
        "runners_cpu_ms_per_job": c4["runners_cpu_ms_per_job"],
    }


def one_round(index: int, peers: Path, jobs: int, n: int) -> dict[str, Any]:
    load = os.getloadavg()
    if index % 2 == 0:
        ours = run_crewboard(jobs, n)
        rq = run_rq(peers, jobs, n, f"r{index}")
    else:
        rq = run_rq(peers, jobs, n, f"r{index}")
        ours = run_crewboard(jobs, n)
    rq_steady = rq["steady_jobs_per_s"]
    ratios = {
        "throughput_c4_vs_rq_w4": ours["jobs_per_s"][4] / rq_steady[4],
        "throughput_c4_vs_rq_w2": ours["jobs_per_s"][4] / rq_steady[2],
        "throughput_c4_vs_rq_w1": ours["jobs_per_s"][4] / rq_steady[1],
        "throughput_c2_vs_rq_w2": ours["jobs_per_s"][2] / rq_steady[2],
        "start_latency_vs_rq": ours["first_line_p50_ms"] / rq["enqueue_to_start_p50_ms"],
    }
    return {
        "round": index,
        "loadavg_1m_start": round(load[0], 2),
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
        "crewboard": ours,
        "rq": rq,
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
    }


def med(rounds: list[dict[str, Any]], *path: Any) -> float:
    values = []
    for r in rounds:
        value: Any = r
        for key in path:
            value = value[key]
        values.append(value)
    return round(statistics.median(values), 2)


def rows(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary table's rows (see run_all.py): medians over rounds, the
    ratio the median of the per-round ratios."""
    loads = [r["loadavg_1m_start"] for r in rounds] + [r["loadavg_1m_end"] for r in rounds]
    load = f"{min(loads):.1f}–{max(loads):.1f}"
    bench = "vs_rq.py"
    out = []
    for c, w, target in ((4, 4, "≥ 1.5"), (4, 2, None), (4, 1, None), (2, 2, None)):
        out.append(
            {
                "measure": f"500 no-op jobs, jobs/s (crewboard concurrency {c})",
                "crewboard": f"{med(rounds, 'crewboard', 'jobs_per_s', c):.1f}",
                "peer": f"RQ fork Worker ×{w}: {med(rounds, 'rq', 'steady_jobs_per_s', w):.1f}",
                "ratio": med(rounds, "ratios", f"throughput_c{c}_vs_rq_w{w}"),
                "target": target,
                "loadavg": load,
                "bench": bench,
            }
        )
    out.append(
        {
            "measure": "start latency p50, ms (create → first log line / enqueue → start)",
            "crewboard": f"{med(rounds, 'crewboard', 'first_line_p50_ms'):.1f}",
            "peer": f"RQ fork Worker: {med(rounds, 'rq', 'enqueue_to_start_p50_ms'):.1f}",
            "ratio": med(rounds, "ratios", "start_latency_vs_rq"),
            "target": "≤ 1.5",
            "loadavg": load,
            "bench": bench,
        }
    )
    return out


def peers_parser(doc: str) -> argparse.ArgumentParser:
    """The options every interleaved bench against a peer takes."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--peers", help="the bench-peers checkout")
    parser.add_argument("--out", help="also write the results here as JSON")
    return parser


def run_rounds(
    args: argparse.Namespace,
    one_round: Callable[[int, Path], dict[str, Any]],
    rows: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
) -> None:
    """Run the rounds, print each, and write and print the summary."""
    peers = find_peers(args.peers)
    if peers is None:
        sys.exit("bench-peers not found: pass --peers or set CREWBOARD_BENCH_PEERS")
    rounds = []
    for index in range(args.rounds):
        rounds.append(one_round(index, peers))
        print(json.dumps(rounds[-1]), flush=True)
    result = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "nproc": os.cpu_count(),
        "rounds": rounds,
        "rows": rows(rounds),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for row in result["rows"]:
        print(f"{row['measure']}: {row['crewboard']} vs {row['peer']} → {row['ratio']}×")


def main() -> None:
    parser = peers_parser(__doc__)
    parser.add_argument("-n", type=int, default=40, help="jobs for each latency measure")
    args = parser.parse_args()
    run_rounds(args, lambda index, peers: one_round(index, peers, args.jobs, args.n), rows)


if __name__ == "__main__":
    main()
