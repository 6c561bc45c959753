"""Benchmark: how soon what a user watches reaches them, on an idle server.

A real ``crewboard web`` and ``crewboard supervisor`` serve a fresh home with
the offline model. This script is the user, over HTTP:

(a) ``chat``: one session, ``--turns`` messages in a row, each streamed from
    ``POST /api/session/newUserMessage``. Per turn: the ``final_result``
    record's time in the log → its frame reaching the client, and send →
    the end of the turn's stream.
(b) ``jobs``: ``-n`` single-job crews from the ``ask`` template, one at a
    time, with ``GET /api/board/events`` open throughout. Per job: POST →
    the feed's ``created`` event for it, POST → the job stream's first frame,
    its ``final_result`` frame → its ``done`` frame, and POST → ``done``.

The ratio of a chat turn's send → done to a job's POST → done, both medians,
compares a chat turn with a job in the same server. Clock differences: the
record's time comes from the runner's clock on the same machine, in ms.

Usage: ``.venv/bin/python bench/stream_latency.py [-n 30] [--turns 5]
[--sessions 6] [--out FILE.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import trio

from crewboard.board import db
from crewboard.home import Home
from large_output import add_reader, wait_for_file
from percentiles import pct
from processes_env import crewboard_env
from sse_fanout import start_web


def ms(values_s: list[float]) -> dict[str, float]:
    values = [v * 1000 for v in values_s]
    return {"p50": round(pct(values, 50), 1), "p90": round(pct(values, 90), 1), "n": len(values)}


def record_time(data: dict) -> float:
    return datetime.fromisoformat(str(data["ts"]).replace("Z", "+00:00")).timestamp()


async def frames(response: httpx.Response):
    """(type, data) of each SSE frame (``data: {"type", "data"}``), as it arrives."""
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            frame = json.loads(line[5:])
            yield frame["type"], frame["data"]


async def chat_turns(
    client: httpx.AsyncClient, turns: int
) -> tuple[list[list[float]], list[float]]:
    """Per turn number, final_result → client (s); and every send → done (s)."""
    created = await client.post("/api/session/create", json={"agent": "assistant"})
    created.raise_for_status()
    session_id = created.json()["id"]
    to_client: list[list[float]] = [[] for _ in range(turns)]
    send_to_done: list[float] = []
    for turn in range(turns):
        sent = time.time()
        url = f"/api/session/newUserMessage/{session_id}"
        body = {"message": f"Turn {turn}: say something."}
        async with client.stream("POST", url, json=body) as response:
            response.raise_for_status()
            async for event, data in frames(response):
                if event == "done":  # the turn's final_result record, with the session
                    to_client[turn].append(time.time() - record_time(data))
        send_to_done.append(time.time() - sent)
    return to_client, send_to_done


async def one_job(client: httpx.AsyncClient, feed: dict[int, trio.Event], seen: dict[int, float]):
    sent = time.time()
    body = {"templateId": "ask", "inputs": {"question": "What is a crew?"}}
    response = await client.post("/api/jobs", json=body)
    response.raise_for_status()
    job_id = response.json()["jobIds"][0]
    arrived = feed.setdefault(job_id, trio.Event())
    first = final = done = None
    async with client.stream("GET", f"/api/jobs/{job_id}/stream") as stream:
        async for event, _data in frames(stream):
            now = time.time()
            first = first or now
            if event == "final_result":
                final = now
            elif event == "done":
                done = now
                break
    with trio.fail_after(30):
        await arrived.wait()
    assert first and final and done
    return seen[job_id] - sent, first - sent, done - final, done - sent


async def follow_feed(
    client: httpx.AsyncClient, feed: dict[int, trio.Event], seen: dict[int, float], task_status
) -> None:
    async with client.stream("GET", "/api/board/events") as response:
        task_status.started()
        async for event, data in frames(response):
            if event == "event" and data.get("kind") == "created" and data.get("jobId"):
                seen[data["jobId"]] = time.time()
                feed.setdefault(data["jobId"], trio.Event()).set()


async def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="crewboard-stream-latency-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        home = Home(work / "home").ensure()
        home.secret_key()
        db.connect(home.board_db)
        _, token = add_reader(home)
        env = crewboard_env(home.root)
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "crewboard", "supervisor", "--home", str(home.root)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=(work / "supervisor.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        processes.append(supervisor)
        wait_for_file(home.wake_socket, supervisor, "the supervisor")
        web, url = start_web(home.root, work / "web.log")
        processes.append(web)
        headers = {"Authorization": f"Bearer {token}"}
        timeout = httpx.Timeout(60, read=60)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout) as client:
            to_client: list[list[float]] = [[] for _ in range(args.turns)]
            chat_done: list[float] = []
            for _ in range(args.sessions):
                per_turn, done = await chat_turns(client, args.turns)
                for turn, values in enumerate(per_turn):
                    to_client[turn] += values
                chat_done += done
            feed: dict[int, trio.Event] = {}
            seen: dict[int, float] = {}
            created, first, final_to_done, job_done = [], [], [], []
            async with trio.open_nursery() as nursery:
                await nursery.start(follow_feed, client, feed, seen)
                for _ in range(args.n):
                    c, f, d, t = await one_job(client, feed, seen)
                    created.append(c)
                    first.append(f)
                    final_to_done.append(d)
                    job_done.append(t)
                nursery.cancel_scope.cancel()
        chat_p50 = pct(chat_done, 50)
        job_p50 = pct(job_done, 50)
        return {
            "chat final_result → client, by turn": [ms(values) for values in to_client],
            "chat send → done": ms(chat_done),
            "job POST → feed created": ms(created),
            "job POST → first frame": ms(first),
            "job final_result → done frame": ms(final_to_done),
            "job POST → done": ms(job_done),
            "chat turn / job, p50 ratio": round(chat_p50 / job_p50, 2),
        }
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
        db.close()
        shutil.rmtree(work, ignore_errors=True)


# What the user is promised on an idle server: (measure, result key, turn, budget ms).
BUDGETS = (
    (
        "chat final_result → client p50, ms, first turn",
        "chat final_result → client, by turn",
        0,
        10,
    ),
    (
        "chat final_result → client p50, ms, later turns",
        "chat final_result → client, by turn",
        -1,
        10,
    ),
    ("job final_result → done frame p50, ms", "job final_result → done frame", None, 20),
    ("job POST → board feed created p50, ms", "job POST → feed created", None, 30),
)


def summary_rows(result: dict, loadavg: str) -> list[dict]:
    """The bench's rows of bench/README.md's summary table (see run_all.py):
    each latency against its budget, and a chat turn against a job."""
    rows = []
    for measure, key, turn, budget_ms in BUDGETS:
        value = result[key] if turn is None else result[key][turn]
        p50 = value["p50"]
        rows.append(
            {
                "measure": measure,
                "crewboard": p50,
                "peer": f"budget: {budget_ms} ms",
                "ratio": round(p50 / budget_ms, 2),
                "target": "≤ 1",
                "loadavg": loadavg,
                "bench": "stream_latency.py",
            }
        )
    chat, job = result["chat send → done"]["p50"], result["job POST → done"]["p50"]
    rows.append(
        {
            "measure": "chat turn send → done p50, ms (against a job's POST → done, same server)",
            "crewboard": chat,
            "peer": f"a job: {job}",
            "ratio": round(chat / job, 2),
            "target": "≤ 1.2",
            "loadavg": loadavg,
            "bench": "stream_latency.py",
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=30, help="jobs, one at a time")
    parser.add_argument("--turns", type=int, default=5, help="messages per chat session")
    parser.add_argument("--sessions", type=int, default=6, help="chat sessions")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    before = os.getloadavg()[0]
    measured = trio.run(run, args)
    after = os.getloadavg()[0]
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        },
        **measured,
        "rows": summary_rows(measured, f"{before:.1f}–{after:.1f}"),
    }
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
