"""Benchmark: how long from spawning a runner until its first log line.

Compares, in one session and with medians over N runs:

- ``bare``: ``sys.executable -c pass``, spawn to exit (the interpreter's floor);
- ``heavy imports``: ``sys.executable -c "import trio, httpx, yaml"``, spawn to exit
  (what a runner would cost if it imported the server's stack);
- ``log format only``: ``sys.executable -c "import crewboard.sessionlog"``, spawn to
  exit (the runner's floor: it must import the log format to write a line);
- ``runner first line``: ``sys.executable -m crewboard.runner`` on the offline
  model, spawn to its first log line (``user_message``) on disk;
- ``runner no-op job``: the same runner, spawn to exit after ``final_result``.

Usage: ``.venv/bin/python bench/runner_spawn.py [-n 40]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crewboard.processes import runner_env


def spec(home: Path, i: int) -> bytes:
    data = {
        "runId": str(i),
        "agentId": "assistant",
        "agents": {"assistant": {"id": "assistant", "name": "Assistant", "instructions": "Help."}},
        "model": {"spec": "offline:scripted", "provider": "offline", "name": "scripted"},
        "prompt": "a no-op job",
        "workspace": str(home / "workspaces" / str(i)),
        "logPath": str(home / "logs" / f"{i}.jsonl"),
        "artifactDir": str(home / "artifacts" / str(i)),
    }
    return json.dumps(data).encode() + b"\n"


def time_exit(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True)
    return time.perf_counter() - started


def spawn_runner(line: bytes, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A runner spawned as the launcher spawns one, its spec sent; its stdin
    stays open (EOF would tell it its parent died)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "crewboard.runner"],
        stdin=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(line)
    proc.stdin.flush()
    return proc


def time_runner(home: Path, i: int, env: dict[str, str]) -> tuple[float, float]:
    """(spawn → first log line, spawn → exit) for one offline no-op run."""
    log = home / "logs" / f"{i}.jsonl"
    line = spec(home, i)
    started = time.perf_counter()
    proc = spawn_runner(line, env)
    assert proc.stdin is not None
    first = None
    while first is None:
        try:
            if os.stat(log).st_size > 0:
                first = time.perf_counter() - started
                break
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"runner exited with {proc.returncode} before logging")
        time.sleep(0.0002)
    code = proc.wait()
    total = time.perf_counter() - started
    proc.stdin.close()
    if code != 0:
        raise RuntimeError(f"runner exited with {code}")
    return first, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=40, help="runs per variant")
    args = parser.parse_args()
    env = runner_env()
    results: dict[str, list[float]] = {
        "bare": [],
        "heavy imports": [],
        "log format only": [],
        "runner first line": [],
        "runner no-op job": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        for i in range(3):  # warm the page cache and .pyc files
            time_exit([sys.executable, "-c", "import trio, httpx, yaml"], env)
            time_runner(home, 1000 + i, env)
        for i in range(args.n):  # interleaved, so drift hits every variant alike
            results["bare"].append(time_exit([sys.executable, "-c", "pass"], env))
            results["heavy imports"].append(
                time_exit([sys.executable, "-c", "import trio, httpx, yaml"], env)
            )
            results["log format only"].append(
                time_exit([sys.executable, "-c", "import crewboard.sessionlog"], env)
            )
            first, total = time_runner(home, i, env)
            results["runner first line"].append(first)
            results["runner no-op job"].append(total)
    bare = statistics.median(results["bare"])
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, n={args.n}"
    )
    print(f"{'variant':<20} {'median ms':>10} {'p90 ms':>8} {'× bare':>7}")
    for name, samples in results.items():
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        print(f"{name:<20} {median * 1000:>10.1f} {p90 * 1000:>8.1f} {median / bare:>7.2f}")


if __name__ == "__main__":
    main()
