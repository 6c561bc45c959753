"""Benchmark: how soon the board, job, schedule and template pages are ready
in Chromium, with the board holding ``--jobs`` jobs; and how long the board's
column totals (``GET /api/jobs/counts``) take on a board of ``--count-jobs``.

Part one makes a home on SQLite, writes ``--jobs`` jobs for one user straight
into the board (crews of one, spread over the statuses as a used board is:
most done, some blocked, archived, waiting and ready), starts ``crewboard
web`` on a free port (no supervisor, so nothing moves) and drives Chromium
through Playwright. Each page is loaded ``--rounds`` times in a fresh tab;
"first load" is the browser's own load event (HTML, CSS and the page's
modules), "ready" is the moment the page shows its content: for the board,
every column has its first page of cards and its real total; for the others,
their "Loading…" is gone. Medians and p90s in milliseconds.

Part two writes ``--count-jobs`` jobs (split between two users) into another
home and times the count query a board heading uses, for a user (the
``(owner, status, id)`` index) and for an admin (the ``(status, id)`` index),
with and without a search, beside one page of the list for comparison.

Usage: ``.venv/bin/python bench/board_pages.py [--jobs 1000] [--rounds 10]
[--count-jobs 100000] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crewboard.board import db, job_views
from crewboard.board import users as board_users
from crewboard.board.db import write
from crewboard.board.models import Crew, Job, JobStatus, User
from crewboard.bootstrap import open_home
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.passwords import Passwords
from processes_env import crewboard_env

PASSWORD = "bench pass phrase"
CHROMIUM = "/usr/bin/chromium"
# How a used board is spread over the statuses, out of 100.
SPREAD = (
    (JobStatus.DONE, 70),
    (JobStatus.BLOCKED, 10),
    (JobStatus.ARCHIVED, 10),
    (JobStatus.WAITING, 6),
    (JobStatus.READY, 4),
)
SETTINGS = {"CREWBOARD_ARGON2_TIME_COST": "1", "CREWBOARD_ARGON2_MEMORY_KIB": "64"}


def status_of(n: int) -> JobStatus:
    slot = n % 100
    for status, share in SPREAD:
        if slot < share:
            return status
        slot -= share
    return JobStatus.DONE


@write
def add_jobs(owner_ids: list[int], count: int, start: int = 0) -> None:
    now = utcnow()
    templates = ("ask", "research-brief", "code-review", "notes-digest")
    for n in range(start, start + count):
        owner = owner_ids[n % len(owner_ids)]
        template = templates[n % len(templates)]
        crew = Crew.create(
            template_id=template, title=f"crew {n}", inputs={}, owner=owner, created_at=now
        )
        status = status_of(n)
        Job.create(
            crew=crew,
            owner=owner,
            key="answer",
            title=f"Question number {n} about owls and larks",
            agent="assistant",
            prompt=f"Question number {n}: where do owls sleep?",
            result="They sleep in the day." if status == JobStatus.DONE else None,
            blocked_reason="needs a key" if status == JobStatus.BLOCKED else None,
            status=status,
            status_before_archive=JobStatus.DONE if status == JobStatus.ARCHIVED else None,
            available_at=now,
            timeout_s=600,
            max_retries=1,
            created_at=now,
            updated_at=now,
        )


def make_home(root: Path, users: list[str], jobs: int) -> tuple[Config, list[int]]:
    config = Config.load(root / "home", environ=SETTINGS)
    open_home(config)
    passwords = Passwords(config.argon2_time_cost, config.argon2_memory_kib)
    ids = [
        board_users.create_user(email, passwords.hash(PASSWORD), now=utcnow()).id for email in users
    ]
    for start in range(0, jobs, 5000):
        add_jobs(ids, min(5000, jobs - start), start)
    return config, ids


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median": round(statistics.median(ordered), 1), "p90": round(p90, 1)}


READY = {
    "board": "() => document.querySelector('#columns')?.getAttribute('aria-busy') === 'false'"
    " && [...document.querySelectorAll('.column .count')].every(c => /^\\d+$/.test(c.textContent))"
    " && document.querySelectorAll('.column').length > 0",
    "job": "() => document.querySelector('#loading')?.hidden === true",
    "schedules": "() => document.querySelector('#list-loading')?.hidden === true",
    "templates": "() => document.querySelector('#list-loading')?.hidden === true",
}


def measure_pages(jobs: int, rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="crewboard-bench-pages-"))
    try:
        config, (user_id,) = make_home(root, ["bench@example.test"], jobs)
        job_id = Job.select(Job.id).where(Job.owner == user_id).order_by(Job.id).first().id
        db.close()
        env = crewboard_env(config.home, **SETTINGS)
        # Its output goes to a file: a pipe nobody reads would fill and stall it.
        log_path = root / "web.log"
        with open(log_path, "w") as log_file:
            web = subprocess.Popen(
                [sys.executable, "-m", "crewboard", "web", "--home", str(config.home),
                 "--port", "0"],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )  # fmt: skip
        try:
            url = None
            deadline = time.monotonic() + 60
            while url is None and time.monotonic() < deadline and web.poll() is None:
                for line in log_path.read_text().splitlines():
                    if "crewboard web serving on " in line:
                        url = line.split("serving on ", 1)[1].split(",")[0].strip().rstrip("/")
                time.sleep(0.1)
            if url is None:
                raise SystemExit("crewboard web did not start:\n" + log_path.read_text())
            results: dict[str, dict[str, list[float]]] = {}
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
                )
                # The readiness probes are evaluated scripts, which the pages' CSP refuses.
                context = browser.new_context(
                    base_url=url, viewport={"width": 1366, "height": 800}, bypass_csp=True
                )
                response = context.request.post(
                    "/auth/login",
                    data={"email": "bench@example.test", "password": PASSWORD},
                    headers={"Origin": url},
                )
                assert response.ok, response.text()
                pages = {
                    "board": "/board",
                    "job": f"/jobs/{job_id}",
                    "schedules": "/schedules",
                    "templates": "/templates",
                }
                for round_no in range(rounds + 1):
                    for name, path in pages.items():
                        tab = context.new_page()
                        tab.goto(path)
                        tab.wait_for_function(READY[name], polling=5, timeout=30_000)
                        ready = tab.evaluate("performance.now()")
                        load = tab.evaluate(
                            "performance.getEntriesByType('navigation')[0].loadEventEnd"
                        )
                        tab.close()
                        if round_no == 0:
                            continue  # warm-up: the server's first answers
                        entry = results.setdefault(name, {"first load": [], "ready": []})
                        entry["first load"].append(load)
                        entry["ready"].append(ready)
                browser.close()
            return {
                name: {what: summary(values) for what, values in entry.items()}
                for name, entry in results.items()
            }
        finally:
            web.terminate()
            try:
                web.wait(10)
            except subprocess.TimeoutExpired:
                web.kill()
                web.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure_counts(jobs: int, repeats: int = 20) -> dict[str, dict[str, float]]:
    root = Path(tempfile.mkdtemp(prefix="crewboard-bench-counts-"))
    try:
        make_home(root, ["ann@example.test", "bob@example.test"], jobs)
        ann_id = User.get(User.email == "ann@example.test").id
        ann = board_users.Principal(ann_id, "ann@example.test", "", False, "local")
        admin = board_users.Principal(0, "admin@example.test", "", True, "local")
        cases = {
            "counts, a user": lambda: job_views.count_jobs(ann),
            "counts, an admin": lambda: job_views.count_jobs(admin),
            "counts, a user, searching": lambda: job_views.count_jobs(ann, q="number 4"),
            "counts, an admin, searching": lambda: job_views.count_jobs(admin, q="number 4"),
            "one page of a column (20 jobs)": lambda: job_views.list_jobs(ann, "done", limit=20),
        }
        results = {}
        for name, call in cases.items():
            call()
            timings = []
            for _ in range(repeats):
                started = time.perf_counter()
                call()
                timings.append((time.perf_counter() - started) * 1000)
            results[name] = summary(timings)
        db.close()
        return results
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--count-jobs", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    empty = measure_pages(1, args.rounds)  # one job: the job page needs one
    full = measure_pages(args.jobs, args.rounds)
    counts = measure_counts(args.count_jobs)
    print(f"pages, ms (median / p90 over {args.rounds} loads at 1366 px):")
    print("| page | board jobs | first load | ready |")
    print("| --- | ---: | ---: | ---: |")
    for jobs, table in ((1, empty), (args.jobs, full)):
        for name, entry in table.items():
            load, ready = entry["first load"], entry["ready"]
            print(
                f"| {name} | {jobs} | {load['median']} / {load['p90']} "
                f"| {ready['median']} / {ready['p90']} |"
            )
    print(f"\nqueries on a board of {args.count_jobs} jobs, ms (median / p90 of 20):")
    print("| query | median | p90 |")
    print("| --- | ---: | ---: |")
    for name, entry in counts.items():
        print(f"| {name} | {entry['median']} | {entry['p90']} |")
    if args.out:
        args.out.write_text(
            json.dumps({"pages": {"1": empty, str(args.jobs): full}, "counts": counts}, indent=2)
        )


if __name__ == "__main__":
    main()
