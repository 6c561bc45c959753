"""Benchmark: what webhooks add to settling a job, and how fast the sender
drains deliveries to a receiver on loopback.

A fresh home on SQLite. ``--jobs`` one-job crews without a webhook URL and
as many with one are claimed and finished through the supervisor's own board
functions (``claim_ready_job`` then ``finish_run``, which queues the job's and
the crew's deliveries in its transaction); the variants are interleaved, and
the table gives the median and p90 time of ``finish_run``. Then the real
sender (``supervisor/webhooks.py``) posts every queued delivery to a
standard-library HTTP server on loopback that answers 204, and the script
reports deliveries per second.

Usage: ``.venv/bin/python bench/webhooks.py [--jobs 300]``
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import trio

from crewboard.board import db, dispatch
from crewboard.board import jobs as board_jobs
from crewboard.board.models import DeliveryStatus, RunOutcome, User, WebhookDelivery
from crewboard.bootstrap import open_home
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.supervisor.webhooks import Sender
from crewboard.workflows.templates import CrewPlan, PlannedJob

PLAN = CrewPlan(
    "bench",
    "bench",
    {},
    (PlannedJob("only", "only", "assistant", "Say hello.", (), None, 600, 0),),
)


class Accept(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def settle_times(home, owner: int, url: str | None, n: int) -> list[float]:
    times = []
    for _ in range(n):
        board_jobs.create_crew(PLAN, owner, webhook_url=url, now=utcnow())
        claim = dispatch.claim_ready_job("bench", home.run_log, now=utcnow())
        assert claim is not None
        start = time.perf_counter()
        dispatch.finish_run(claim.run_id, RunOutcome.SUCCEEDED, result="hello", now=utcnow())
        times.append((time.perf_counter() - start) * 1000)
    return times


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def drain(sender: Sender) -> None:
    while await sender.run_round() == 0.0:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Accept)
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    with tempfile.TemporaryDirectory() as tmp:
        config = Config.load(Path(tmp) / "home", environ={})
        config = dataclasses.replace(config, webhook_allow=("127.0.0.1",))
        home = open_home(config)
        owner = User.create(email="bench@example.test", created_at=utcnow()).id
        plain: list[float] = []
        hooked: list[float] = []
        for _ in range(args.jobs // 50):
            plain += settle_times(home, owner, None, 50)
            hooked += settle_times(home, owner, url, 50)
        print("| crews | finish_run median ms | p90 ms |")
        print("| --- | ---: | ---: |")
        for name, values in (("no webhook", plain), ("webhook (job + crew queued)", hooked)):
            print(f"| {name} | {statistics.median(values):.2f} | {pct(values, 0.9):.2f} |")
        queued = WebhookDelivery.select().count()
        start = time.perf_counter()
        trio.run(drain, Sender("bench", config))
        elapsed = time.perf_counter() - start
        delivered = (
            WebhookDelivery.select()
            .where(WebhookDelivery.status == DeliveryStatus.DELIVERED)
            .count()
        )
        assert delivered == queued, (delivered, queued)
        print(f"\nsender: {delivered} deliveries in {elapsed:.2f} s, {delivered / elapsed:.0f}/s")
        db.close()
    server.shutdown()


if __name__ == "__main__":
    main()
