"""Benchmark: what an MCP tool server costs a run.

Every variant is a real runner (``sys.executable -m crewboard.runner``, the
runner's scrubbed environment) on the offline model, timed from spawn to its
exit after ``final_result``; the variants are interleaved, medians over N:

- ``no MCP``: a no-op run (the floor);
- ``time server, one call``: a run whose preset names ``mcp-server-time``
  (started inside bubblewrap), calling ``time__get_current_time`` once;
- of that run, ``server start`` is the time from the runner's first log line
  to ``agent_start`` (the server started and listed its tools), and
  ``one call`` from ``agent_tool_start`` to ``agent_tool_end``.

Needs bubblewrap and the ``mcp`` extra with ``mcp-server-time`` beside this
interpreter. Usage: ``.venv/bin/python bench/mcp_start.py [-n 10]``
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
from datetime import datetime
from pathlib import Path

from crewboard.processes import runner_env
from runner_spawn import spawn_runner

TIME_SERVER = str(Path(sys.executable).parent / "mcp-server-time")


def spec(home: Path, i: int, with_mcp: bool) -> bytes:
    agent: dict[str, object] = {"id": "a", "name": "A", "instructions": "Help."}
    data: dict[str, object] = {
        "runId": str(i),
        "agentId": "a",
        "agents": {"a": agent},
        "model": {"spec": "offline:scripted", "provider": "offline", "name": "scripted"},
        "prompt": "a no-op job",
        "workspace": str(home / "workspaces" / str(i)),
        "logPath": str(home / "logs" / f"{i}.jsonl"),
        "artifactDir": str(home / "artifacts" / str(i)),
    }
    if with_mcp:
        agent["mcp"] = ["time"]
        data["prompt"] = '/tool time__get_current_time {"timezone": "UTC"}'
        folders = sorted({sys.prefix, os.path.realpath(sys.base_prefix)})
        data["mcp"] = {
            "time": {
                "name": "time",
                "command": [TIME_SERVER],
                "readOnly": [f for f in folders if not f.startswith("/usr")],
            }
        }
    return json.dumps(data).encode() + b"\n"


def run(home: Path, i: int, with_mcp: bool, env: dict[str, str]) -> tuple[float, list[dict]]:
    """Spawn → exit of one run, and its log records."""
    started = time.perf_counter()
    proc = spawn_runner(spec(home, i, with_mcp), env)
    assert proc.stdin is not None
    code = proc.wait()
    total = time.perf_counter() - started
    proc.stdin.close()
    records = [json.loads(line) for line in (home / "logs" / f"{i}.jsonl").open()]
    if code != 0 or records[-1]["type"] != "final_result":
        raise RuntimeError(f"run {i} failed ({code}): {records[-1]}")
    return total, records


def gap_s(records: list[dict], first: str, second: str) -> float:
    at = {r["type"]: datetime.fromisoformat(r["ts"].replace("Z", "+00:00")) for r in records}
    return (at[second] - at[first]).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=10, help="runs per variant")
    args = parser.parse_args()
    env = runner_env()
    results: dict[str, list[float]] = {
        "no MCP": [],
        "time server, one call": [],
        "  server start": [],
        "  one call": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        for i in range(2):  # warm the page cache and .pyc files
            run(home, 1000 + i, True, env)
        for i in range(args.n):
            results["no MCP"].append(run(home, 2 * i, False, env)[0])
            total, records = run(home, 2 * i + 1, True, env)
            results["time server, one call"].append(total)
            results["  server start"].append(gap_s(records, "user_message", "agent_start"))
            results["  one call"].append(gap_s(records, "agent_tool_start", "agent_tool_end"))
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, n={args.n}"
    )
    print(f"{'variant':<24} {'median ms':>10} {'p90 ms':>8}")
    for name, samples in results.items():
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else median
        print(f"{name:<24} {median * 1000:>10.1f} {p90 * 1000:>8.1f}")


if __name__ == "__main__":
    main()
