"""Benchmark: does a run streaming a large output slow the web for everyone else?

Two modes, each on a fresh home of its own (``--mode both``, the default,
runs ``run`` then ``raw``):

- ``run``: the real thing. A real ``crewboard web`` and a real ``crewboard
  supervisor`` serve a home whose ``crewboard.toml`` has a ``[providers.fake]``
  table pointing at a fake OpenAI-compatible server on loopback (the test
  suite's ``tests/support/fake_openai.py``, in a process of its own), which
  streams ``--mb`` MiB of text as ``--delta-kib`` KiB content deltas. A
  preset using ``fake:model`` answers a one-job template; each round creates
  the job with ``POST /api/jobs`` and the supervisor runs it in a real runner,
  whose output caps (``limits.maxResultBytes``, 1 MiB by default) keep a
  step's logged text and the final result to 1 MiB each, the whole answer
  going to an artifact.
- ``raw``: no runner and no caps. A process of the script's own appends
  ``--mb`` MiB of text deltas straight into a running job's log, then a
  ``final_result`` of ``--result-kib`` KiB: the web's worst case, a log far
  larger than a capped run writes.

Either way one client (a process of its own) follows the job's stream to ``done`` while
``GET /auth/me`` (bearer token) is timed every 20 ms; each round first times
it for 3 s on the idle server, then for as long as the output streams. Idle
and loaded phases alternate round by round, so drift on a shared machine hits
both alike.

Reported per round: ``/auth/me`` p50 and p99 idle and under load and their
ratios; per mode, the median of the per-round ratios, the load average before
and after, the web's peak memory, and whether every stream ended with
``done``. A ratio near 1 means the web stays as fast as before within noise.

Usage: ``.venv/bin/python bench/large_output.py [--mode both|run|raw]
[--rounds 5] [--mb 20] [--delta-kib 4] [--result-kib 1024] [--quick]
[--keep] [--out FILE.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
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
from processes_env import crewboard_env
from sse_fanout import rss_mib, start_web

REPO = Path(__file__).resolve().parent.parent
PROBE_EVERY_S = 0.02
IDLE_S = 3.0
# What the model says, over and over: a Markdown paragraph, so rendering the
# final result costs what it costs for a real answer (plain words are nearly free).
PARAGRAPH = "A paragraph of *the* answer.\n\n"

PRESET = """\
name: Verbose
description: Streams whatever the fake model sends.
instructions: Answer at length.
model: fake:model
tools: []
"""
TEMPLATE = """\
name: Say a lot
description: One job whose model streams a very long answer.
inputs:
  question:
    type: string
    required: true
defaults: {agent: verbose, timeout: 600, retries: 0}
jobs:
  answer:
    title: a long answer
    prompt: "{{ inputs.question }}"
"""


def add_reader(home: Home) -> tuple[int, str]:
    """A user of the board and an API token of theirs."""
    user = board_users.create_user("reader@example.test", None, is_admin=False, now=utcnow())
    _, token = board_users.create_token(user.id, "bench", now=utcnow())
    return user.id, token


# --- the raw mode: a log written straight, no runner ------------------------------


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
        result = PARAGRAPH * (args.result_kib * 1024 // len(PARAGRAPH))
        writer.append("final_result", agentName="assistant", text=result)
    dispatch.finish_run(run_id, RunOutcome.SUCCEEDED, exit_code=0, result="said", now=utcnow())


class RawMode:
    """A web process alone; the script plays the runner."""

    name = "raw"

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.args = args
        self.home = Home(work / "home").ensure()
        self.home.secret_key()
        db.connect(self.home.board_db)
        self.user_id, self.token = add_reader(self.home)
        self.web, self.url = start_web(self.home.root, work / "web.log")
        self.processes: list[subprocess.Popen[bytes]] = [self.web]

    async def start_job(self, client: httpx.AsyncClient) -> tuple[int, Callable[[], Awaitable]]:
        job_id, run_id = await trio.to_thread.run_sync(new_run, self.home, self.user_id)
        command = [sys.executable, __file__, "--play-run", str(self.home.root), str(run_id)]
        command += ["--mb", str(self.args.mb), "--delta-kib", str(self.args.delta_kib)]
        command += ["--result-kib", str(self.args.result_kib)]
        return job_id, lambda: trio.run_process(command)


# --- the run mode: a real job through the supervisor, a runner and its caps ------


def serve_fake(url_file: Path, args: argparse.Namespace) -> None:
    """The fake OpenAI-compatible server, answering every request with
    ``args.mb`` MiB of text in ``args.delta_kib`` KiB deltas, until killed
    (see ``--serve-fake``)."""
    sys.path.insert(0, str(REPO))
    from tests.support.fake_openai import Reply, fake_openai

    text = PARAGRAPH * (args.mb * 1024 * 1024 // len(PARAGRAPH))
    reply = Reply.text(text, pieces=args.mb * 1024 // args.delta_kib)
    # Each SSE line encoded once, not per request: the fake's own CPU would
    # otherwise weigh on the machine as much as the runner's.
    reply.events = [f"data: {json.dumps(event)}".encode() for event in reply.events]
    with fake_openai() as server:
        server.next_reply = lambda body: reply  # type: ignore[method-assign]
        url_file.write_text(server.base_url)
        while True:
            time.sleep(3600)


def wait_for_file(path: Path, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.05)


class RunMode:
    """A web process, a supervisor and a fake model server."""

    name = "run"

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.args = args
        self.processes: list[subprocess.Popen[bytes]] = []
        url_file = work / "fake.url"
        command = [sys.executable, __file__, "--serve-fake", str(url_file)]
        command += ["--mb", str(args.mb), "--delta-kib", str(args.delta_kib)]
        fake = subprocess.Popen(
            command, stdout=(work / "fake.log").open("wb"), stderr=subprocess.STDOUT
        )
        self.processes.append(fake)
        wait_for_file(url_file, fake, "the fake model server")
        (work / "agents").mkdir()
        (work / "agents" / "verbose.agent.yaml").write_text(PRESET)
        (work / "workflows").mkdir()
        (work / "workflows" / "say-a-lot.job_workflow.yaml").write_text(TEMPLATE)
        self.home = Home(work / "home").ensure()
        (self.home.root / "crewboard.toml").write_text(
            f'CREWBOARD_AGENTS = "{work / "agents"}"\n'
            f'CREWBOARD_WORKFLOWS = "{work / "workflows"}"\n'
            "[providers.fake]\n"
            f'base_url = "{url_file.read_text()}"\n'
            # The fake server honours max_tokens in words: let the answer through.
            "max_tokens = 1000000000\n"
        )
        self.home.secret_key()
        db.connect(self.home.board_db)
        self.user_id, self.token = add_reader(self.home)
        env = crewboard_env(self.home.root)
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "crewboard", "supervisor", "--home", str(self.home.root)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=(work / "supervisor.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.processes.append(supervisor)
        wait_for_file(self.home.wake_socket, supervisor, "the supervisor")
        self.web, self.url = start_web(self.home.root, work / "web.log")
        self.processes.append(self.web)

    async def start_job(self, client: httpx.AsyncClient) -> tuple[int, Callable[[], Awaitable]]:
        body = {"templateId": "say-a-lot", "inputs": {"question": "Say a lot."}}
        response = await client.post("/api/jobs", json=body)
        assert response.status_code == 201, response.text
        return response.json()["jobIds"][0], trio.lowlevel.checkpoint


# --- measuring -----------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def probe(client: httpx.AsyncClient, until: trio.Event, into: list[float]) -> None:
    while not until.is_set():
        t0 = time.perf_counter()
        response = await client.get("/auth/me")
        into.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.text
        await trio.sleep(PROBE_EVERY_S)


async def follow(url: str, token: str, job_id: int) -> dict:
    """Follow the job's stream to its ``done`` frame: its run and outcome,
    and how much was received (see ``--follow``)."""
    received = 0
    tail = b""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client,
        client.stream("GET", f"/api/jobs/{job_id}/stream") as response,
    ):
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            tail = (tail + chunk)[-4096:]
            at = tail.find(b'"type":"done"')
            if at >= 0 and tail.endswith(b"\n\n"):
                frame = tail[tail.rfind(b"data: ", 0, at) + 6 :].strip()
                return {**json.loads(frame)["data"], "streamedMiB": round(received / 2**20, 2)}
    return {"streamedMiB": round(received / 2**20, 2)}


async def follow_in_child(
    mode: RawMode | RunMode, job_id: int, done: trio.Event, into: dict
) -> None:
    """:func:`follow` in a process of its own, as a browser is: receiving
    megabytes must not delay this process's probes."""
    command = [sys.executable, __file__, "--follow", mode.url, mode.token, str(job_id)]
    followed = await trio.run_process(command, capture_stdout=True)
    into.update(json.loads(followed.stdout))
    done.set()


async def one_round(client: httpx.AsyncClient, mode: RawMode | RunMode) -> dict:
    idle: list[float] = []
    stop = trio.Event()
    idle_cpu0 = cpu_s(mode.web.pid)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe, client, stop, idle)
        await trio.sleep(IDLE_S)
        stop.set()
    idle_cpu = cpu_s(mode.web.pid) - idle_cpu0

    loaded: list[float] = []
    done = trio.Event()
    ended: dict = {}
    t0, cpu0 = time.perf_counter(), cpu_s(mode.web.pid)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe, client, done, loaded)
        job_id, play = await mode.start_job(client)
        nursery.start_soon(follow_in_child, mode, job_id, done, ended)
        await play()
        with trio.fail_after(300):
            await done.wait()
    log_path = mode.home.run_log(ended["runId"]) if "runId" in ended else None
    return {
        "idleMs": {"p50": round(pct(idle, 50), 2), "p99": round(pct(idle, 99), 2)},
        "loadedMs": {"p50": round(pct(loaded, 50), 2), "p99": round(pct(loaded, 99), 2)},
        "loadedMaxMs": round(max(loaded), 1),
        "p50Ratio": round(pct(loaded, 50) / pct(idle, 50), 2),
        "p99Ratio": round(pct(loaded, 99) / pct(idle, 99), 2),
        "streamedS": round(time.perf_counter() - t0, 1),
        "webCpuS": {"idle": round(idle_cpu, 2), "loaded": round(cpu_s(mode.web.pid) - cpu0, 2)},
        "probes": [len(idle), len(loaded)],
        "outcome": ended.get("outcome"),
        "streamedMiB": ended.get("streamedMiB"),
        "logMiB": round(log_path.stat().st_size / 2**20, 2) if log_path else None,
    }


async def run_mode(mode_class: type[RawMode] | type[RunMode], args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"crewboard-large-output-{mode_class.name}-"))
    load_before = os.getloadavg()
    mode = mode_class(work, args)
    rounds = []
    try:
        headers = {"Authorization": f"Bearer {mode.token}"}
        async with httpx.AsyncClient(base_url=mode.url, headers=headers, timeout=60) as client:
            for _ in range(args.warmup):
                await client.get("/auth/me")
            for n in range(args.rounds):
                rounds.append(await one_round(client, mode))
                print(f"{mode.name} round {n + 1}: {json.dumps(rounds[-1])}", flush=True)
        _, peak_rss = rss_mib(mode.web.pid)
    finally:
        for process in reversed(mode.processes):
            process.terminate()
            process.wait(10)
        db.close()
        if not args.keep:
            # Each round leaves a 20 MiB artifact or log behind.
            shutil.rmtree(work, ignore_errors=True)
    return {
        "mode": mode.name,
        "rounds": rounds,
        "medianP50Ratio": statistics.median(r["p50Ratio"] for r in rounds),
        "medianP99Ratio": statistics.median(r["p99Ratio"] for r in rounds),
        "allDone": all(r["outcome"] is not None for r in rounds),
        "webPeakRssMiB": round(peak_rss, 1),
        "loadAverage": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "work": str(work) if args.keep else None,
    }


async def run(args: argparse.Namespace) -> dict:
    modes = {"run": [RunMode], "raw": [RawMode], "both": [RunMode, RawMode]}[args.mode]
    return {
        "mb": args.mb,
        "deltaKiB": args.delta_kib,
        "resultKiB": args.result_kib,
        "modes": [await run_mode(mode, args) for mode in modes],
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("both", "run", "raw"), default="both")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mb", type=int, default=20)
    parser.add_argument("--delta-kib", type=int, default=4)
    parser.add_argument("--result-kib", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--quick", action="store_true", help="2 rounds of 4 MiB, to try a change quickly"
    )
    parser.add_argument("--out", help="also write the result as JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the homes, logs and artifacts")
    parser.add_argument("--play-run", nargs=2, metavar=("HOME", "RUN_ID"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-fake", metavar="URL_FILE", help=argparse.SUPPRESS)
    parser.add_argument(
        "--follow", nargs=3, metavar=("URL", "TOKEN", "JOB_ID"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.mb = 2, 4
    if args.follow:
        url, token, job_id = args.follow
        print(json.dumps(trio.run(follow, url, token, int(job_id))))
        return
    if args.serve_fake:
        serve_fake(Path(args.serve_fake), args)
        return
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
