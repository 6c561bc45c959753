"""Benchmark: crewboard's supervisor against Celery and Huey, interleaved in one session.

Each round runs, in alternating order, crewboard's throughput at concurrency
2 (``dispatch.py``: a real ``crewboard supervisor``, runners forked from its
template) and the burst benches of ``shared/bench-peers`` with 2 workers
each, on their own redis-server:

- Celery, prefork ``-c 2`` with ``--max-tasks-per-child 1`` (a fresh
  process per task: the crash isolation crewboard gives every run) and
  without it (two processes reused for every task);
- Huey, ``-k process -w 2`` (processes reused), on SQLite and on Redis.

crewboard's jobs/s run from the wake-up to the last run's end on the board;
the peers' are their *steady* rate (first start to last end). Each round's
ratios are computed within the round; the summary is the median of the
per-round ratios, with the load average of every round.

Usage: ``.venv/bin/python bench/vs_celery_huey.py [--rounds 3] [--jobs 500]
[--peers DIR] [--out FILE.json]``. The peers' venv must exist (``bash
setup.sh`` there).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from dispatch import bench_throughput
from vs_rq import PEERS_ROOT, med, peers_parser, run_rounds

# (result key, bench script, its arguments, the name of each variant in its summary)
PEERS = (
    (
        "celery",
        "celery_bench.py",
        ("--variants", "prefork_c2_mtpc1,prefork_c2"),
        {
            "prefork_c2_mtpc1": "Celery prefork ×2, a process per task",
            "prefork_c2": "Celery prefork ×2, processes reused",
        },
    ),
    (
        "huey",
        "huey_bench.py",
        ("--kinds", "sqlite,redis", "--workers", "2"),
        {
            "sqlite": "Huey SQLite, 2 worker processes",
            "redis": "Huey Redis, 2 worker processes",
        },
    ),
)


def run_peer(peers: Path, script: str, extra: tuple[str, ...], jobs: int, tag: str) -> dict:
    """One rep of a peer's burst bench; the steady jobs/s of each variant."""
    out = f"crewboard_vs_{Path(script).stem}_{tag}"
    subprocess.run(
        [
            str(PEERS_ROOT / "venv" / "bin" / "python"), script,
            "--reps", "1", "--jobs", str(jobs), "--skip-idle", *extra, "--out", out,
        ],
        cwd=peers,
        env={**os.environ, "PEERS_ROOT": str(PEERS_ROOT)},
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    summary = json.loads((PEERS_ROOT / "results" / f"{out}.json").read_text())["summary"]
    return {v: s["jobs_per_s_steady"]["median"] for v, s in summary["burst"].items()}


def one_round(index: int, peers: Path, jobs: int) -> dict[str, Any]:
    load = os.getloadavg()
    result: dict[str, Any] = {"round": index, "loadavg_1m_start": round(load[0], 2)}

    def ours() -> None:
        run = bench_throughput(jobs, 2, forkserver=True)
        result["crewboard"] = {
            "jobs_per_s": run["jobs_per_s_wall"],
            "supervisor_cpu_ms_per_job": run["supervisor_cpu_ms_per_job"],
            "runners_cpu_ms_per_job": run["runners_cpu_ms_per_job"],
        }

    def theirs() -> None:
        for key, script, extra, _ in PEERS:
            result[key] = run_peer(peers, script, extra, jobs, f"r{index}")

    for step in (ours, theirs) if index % 2 == 0 else (theirs, ours):
        step()
    result["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    result["ratios"] = {
        f"vs_{key}_{variant}": round(result["crewboard"]["jobs_per_s"] / result[key][variant], 3)
        for key, _, _, names in PEERS
        for variant in names
    }
    return result


def rows(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary table's rows (see run_all.py)."""
    loads = [r["loadavg_1m_start"] for r in rounds] + [r["loadavg_1m_end"] for r in rounds]
    ours = f"{med(rounds, 'crewboard', 'jobs_per_s'):.1f}"
    return [
        {
            "measure": "500 no-op jobs, jobs/s (crewboard concurrency 2)",
            "crewboard": ours,
            "peer": f"{name}: {med(rounds, key, variant):.1f}",
            "ratio": med(rounds, "ratios", f"vs_{key}_{variant}"),
            "target": None,
            "loadavg": f"{min(loads):.1f}–{max(loads):.1f}",
            "bench": "vs_celery_huey.py",
        }
        for key, _, _, names in PEERS
        for variant, name in names.items()
    ]


def main() -> None:
    args = peers_parser(__doc__).parse_args()
    run_rounds(args, lambda index, peers: one_round(index, peers, args.jobs), rows)


if __name__ == "__main__":
    main()
