"""What :mod:`crewboard.metrics` counts, added up across processes as a
scrape sees it. Each counting process is a child of its own: metrics turn
multiprocess mode on for the whole process they are enabled in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

COUNT = """
import sys
from pathlib import Path
from crewboard import metrics
metrics.enable(Path(sys.argv[1]))
metrics.run_finished("succeeded", 1.5, 0.2)
metrics.run_finished("failed", 0.3, 4.0)
metrics.chat_turn_finished("stopped")
metrics.run_recovered("crashed")
metrics.schedule_fired("spawned", 3)   # its own fire and two missed ones
metrics.schedule_fired("skipped", 1)
metrics.board_write_retried("finish_run")
usage = {"requests": 2, "inputTokens": 10, "outputTokens": 4, "totalTokens": 14}
metrics.provider_usage("openai", "job", {"type": "final_result", "usage": usage})
metrics.provider_usage("openai", "chat", {"type": "error", "providerError": True,
    "usage": {"requests": 1, "inputTokens": None, "outputTokens": None}})
metrics.provider_usage("openai", "job", {"type": "error", "usage": "garbled"})
metrics.provider_usage("openai", "job", None)
with metrics.sse_subscriber("board"):
    pass
"""

SCRAPE = """
import sys
from pathlib import Path
from crewboard import metrics
metrics.enable(Path(sys.argv[1]))
gauges = metrics.BoardGauges({"ready": 2, "done": 5}, 1, 4, 1)
with metrics.sse_subscriber("jobs"):
    sys.stdout.write(metrics.exposition(gauges)[0].decode())
"""


def run(script: str, run_dir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, str(run_dir)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_counts_of_several_processes_add_up_in_one_scrape(tmp_path):
    run_dir = tmp_path / "run"
    run(COUNT, run_dir)
    run(COUNT, run_dir)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(run(SCRAPE, run_dir))
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("crewboard_runs_total", outcome="succeeded") == 2
    assert value("crewboard_run_duration_seconds_sum", outcome="succeeded") == 3.0
    assert value("crewboard_runs_total", outcome="crashed") == 2
    assert value("crewboard_run_duration_seconds_count", outcome="crashed") == 0
    assert value("crewboard_queue_wait_seconds_count") == 4
    assert value("crewboard_queue_wait_seconds_bucket", le="0.25") == 2
    assert value("crewboard_chat_turns_total", outcome="stopped") == 2
    assert value("crewboard_schedule_fires_total", outcome="spawned") == 2
    assert value("crewboard_schedule_fires_total", outcome="skipped") == 2
    assert value("crewboard_schedule_missed_fires_total") == 4
    assert value("crewboard_board_write_retries_total", function="finish_run") == 2
    openai_job = {"provider": "openai", "kind": "job"}
    assert value("crewboard_provider_requests_total", **openai_job) == 4
    assert value("crewboard_provider_tokens_total", direction="input", **openai_job) == 20
    assert value("crewboard_provider_tokens_total", direction="output", **openai_job) == 8
    assert value("crewboard_provider_errors_total", **openai_job) == 0
    openai_chat = {"provider": "openai", "kind": "chat"}
    assert value("crewboard_provider_requests_total", **openai_chat) == 2
    assert value("crewboard_provider_errors_total", **openai_chat) == 2
    # The streams of the processes that ended are gone; the scraper's own is open.
    assert value("crewboard_sse_subscribers", stream="board") == 0
    assert value("crewboard_sse_subscribers", stream="jobs") == 1
    # The board's gauges, as read at the scrape.
    assert value("crewboard_jobs", status="ready") == 2
    assert value("crewboard_jobs", status="done") == 5
    assert value("crewboard_runners_running") == 1
    assert value("crewboard_runners_capacity") == 4


def test_nothing_is_counted_or_imported_until_enabled():
    script = (
        "import sys\n"
        "from crewboard import metrics\n"
        "metrics.run_finished('succeeded', 1.0, 0.0)\n"
        "metrics.provider_usage('offline', 'job', {'usage': {'requests': 1}})\n"
        "with metrics.sse_subscriber('board'):\n"
        "    pass\n"
        "assert not metrics.enabled()\n"
        "assert 'prometheus_client' not in sys.modules, 'imported while off'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
