"""``GET /metrics`` of a live `crewboard serve`, scraped after real work
(jobs that succeed and jobs that fail on the provider; chat turns; an open
stream) and compared with what the board and the runs' logs say; and who
may scrape it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.served import Served, serving
from tests.support.waits import wait_until

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board

METRICS_ON = {"CREWBOARD_METRICS": "1", "CREWBOARD_CONCURRENCY": "3"}
PROMPTS = ["Say hello."] * 7 + ["/fail the provider is down"] * 2


def scrape(served: Served) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by the administrator, by name and labels."""
    response = served.client("admin").get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def board(served, query: str) -> dict[str, int]:
    return {str(key): int(count) for key, count in served.query(query)}


def terminal_usage(logs: list[Path]) -> Counter[str]:
    """What the offline model reported in the terminal records of these logs."""
    total: Counter[str] = Counter()
    for path in logs:
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["type"] in ("final_result", "error", "blocked"):
                for key in ("requests", "inputTokens", "outputTokens"):
                    total[key] += (record.get("usage") or {}).get(key) or 0
    return total


def test_metrics_agree_with_the_board_after_real_work(tmp_path):
    with serving(tmp_path, METRICS_ON) as served:
        user = served.client("user")
        for prompt in PROMPTS:
            created = user.post(
                "/api/jobs", json={"templateId": "echo", "inputs": {"prompt": prompt}}
            )
            assert created.status_code == 201, created.text
        session = user.post("/api/session/create", json={"agent": "assistant"}).json()
        for message in ("Hello there.", "/fail the model went away"):
            with user.stream(
                "POST", f"/api/session/newUserMessage/{session['id']}", json={"message": message}
            ) as turn:
                assert turn.status_code == 200
                turn.read()  # the stream ends with the turn

        def settled() -> bool:
            open_jobs = board(
                served,
                "SELECT status, COUNT(*) FROM job WHERE status IN "
                "('waiting', 'ready', 'running') GROUP BY status",
            )
            return not open_jobs

        wait_until(settled, 60, "every job to end")
        runs = board(served, "SELECT outcome, COUNT(*) FROM run GROUP BY outcome")
        assert runs == {"succeeded": 7, "failed": 2}

        def counted():
            samples = scrape(served)
            finished = sum(value(samples, "crewboard_runs_total", outcome=o) for o in runs)
            turns = sum(
                value(samples, "crewboard_chat_turns_total", outcome=o)
                for o in ("succeeded", "failed")
            )
            # Runners come from the heartbeat: idle from the beat after the last run.
            idle = value(samples, "crewboard_runners_running") == 0
            return samples if finished == sum(runs.values()) and turns == 2 and idle else None

        samples = wait_until(counted, 30, "the scrape to count every run and turn, runners idle")

        jobs = board(served, "SELECT status, COUNT(*) FROM job GROUP BY status")
        for status in ("waiting", "ready", "running", "done", "blocked", "archived"):
            assert value(samples, "crewboard_jobs", status=status) == jobs.get(status, 0), status
        for outcome, count in runs.items():
            assert value(samples, "crewboard_runs_total", outcome=outcome) == count
            assert value(samples, "crewboard_run_duration_seconds_count", outcome=outcome) == count
        assert value(samples, "crewboard_queue_wait_seconds_count") == sum(runs.values())
        assert value(samples, "crewboard_chat_turns_total", outcome="succeeded") == 1
        assert value(samples, "crewboard_chat_turns_total", outcome="failed") == 1

        # Provider usage: what the offline model reported, run by run.
        job_usage = terminal_usage(sorted((served.home / "logs" / "runs").glob("*.jsonl")))
        chat_usage = terminal_usage(sorted((served.home / "logs" / "chat").glob("*.jsonl")))
        for kind, usage in (("job", job_usage), ("chat", chat_usage)):
            offline = {"provider": "offline", "kind": kind}
            assert usage["requests"] > 0 and usage["inputTokens"] > 0
            assert (
                value(samples, "crewboard_provider_requests_total", **offline) == usage["requests"]
            )
            for direction, key in (("input", "inputTokens"), ("output", "outputTokens")):
                assert (
                    value(
                        samples, "crewboard_provider_tokens_total", direction=direction, **offline
                    )
                    == usage[key]
                ), (kind, direction)
        assert (
            value(samples, "crewboard_provider_errors_total", provider="offline", kind="job") == 2
        )
        assert (
            value(samples, "crewboard_provider_errors_total", provider="offline", kind="chat") == 1
        )

        # Runners against capacity, from the live supervisor's heartbeat.
        assert value(samples, "crewboard_runners_capacity") == 3
        assert value(samples, "crewboard_runners_running") == 0
        assert value(samples, "crewboard_supervisors_live") == 1

        # An open stream is a subscriber for as long as it is open.
        with user.stream("GET", "/api/board/events") as events:
            assert events.status_code == 200
            chunks = events.iter_bytes()  # held: dropping it would hang up
            assert next(chunks).startswith(b"retry:")
            wait_until(
                lambda: value(scrape(served), "crewboard_sse_subscribers", stream="board") == 1,
                10,
                "the open stream to be counted",
            )
        wait_until(
            lambda: value(scrape(served), "crewboard_sse_subscribers", stream="board") == 0,
            10,
            "the closed stream to be let go",
        )


def test_only_administrators_scrape_and_only_when_enabled(tmp_path):
    with serving(tmp_path / "on", METRICS_ON) as served:
        anonymous = served.client(None).get("/metrics")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "unauthorized"
        user = served.client("user").get("/metrics")
        assert user.status_code == 403
        assert user.json()["error"]["code"] == "forbidden"
        bad = httpx.get(f"{served.url}metrics", headers={"Authorization": "Bearer cb_nope"})
        assert bad.status_code == 401
        assert "crewboard_jobs" in served.client("admin").get("/metrics").text
    with serving(tmp_path / "off") as served:
        off = served.client("admin").get("/metrics")
        assert off.status_code == 404
        assert off.json()["error"] == {
            "code": "not_found",
            "message": "no such route",
            "details": {},
        }
