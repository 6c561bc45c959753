"""The Prometheus metrics that processes count as things happen: runs and
their durations, chat turns, provider usage, schedule fires, SSE
subscribers and board write retries.

Off unless ``CREWBOARD_METRICS`` is on. Then the web and the supervisor each
call :func:`enable` as they start, and count into prometheus-client's
multiprocess files under the home's ``run/metrics`` folder
(``PROMETHEUS_MULTIPROC_DIR``); ``GET /metrics`` (``web/api/metrics.py``)
adds them up with what it reads from the board at scrape time (jobs by
status, runners against capacity). ``crewboard serve`` empties the folder as
it starts, so counters start from zero with the server.

Until :func:`enable` is called every function here is a no-op that imports
nothing: the runner, which must stay lean, never counts anything itself.
What a run asked of its provider is counted by the process that reaps it,
from the run's terminal record (:func:`provider_usage`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "crewboard"

# Run lengths: a no-op run takes a fraction of a second, a real one minutes.
DURATION_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# Queue waits: from "claimed at once" to "waited an hour for a runner".
WAIT_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


@dataclass(frozen=True)
class _Metrics:
    runs: Any
    run_duration: Any
    queue_wait: Any
    chat_turns: Any
    sse_subscribers: Any
    schedule_fires: Any
    schedule_misses: Any
    provider_requests: Any
    provider_errors: Any
    provider_tokens: Any
    board_write_retries: Any


_metrics: _Metrics | None = None


def metrics_dir(run_dir: Path) -> Path:
    """Where the processes of a home keep their counts."""
    return run_dir / "metrics"


def clear(run_dir: Path) -> None:
    """Empty the counts of earlier runs of the server (``crewboard serve``,
    before it starts its children)."""
    folder = metrics_dir(run_dir)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def enable(run_dir: Path) -> None:
    """Start counting in this process, into the home's metrics folder. Must
    run before anything else imports prometheus_client, which picks its
    multiprocess mode as it is imported."""
    global _metrics
    if _metrics is not None:
        return
    folder = metrics_dir(run_dir)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    _forget_dead_processes(folder)
    from prometheus_client import Counter, Gauge, Histogram

    _metrics = _Metrics(
        runs=Counter(f"{PREFIX}_runs", "Job runs ended, by outcome", ["outcome"]),
        run_duration=Histogram(
            f"{PREFIX}_run_duration_seconds",
            "How long job runs took, from launch to reap",
            ["outcome"],
            buckets=DURATION_BUCKETS_S,
        ),
        queue_wait=Histogram(
            f"{PREFIX}_queue_wait_seconds",
            "How long a ready job waited for a runner",
            buckets=WAIT_BUCKETS_S,
        ),
        chat_turns=Counter(f"{PREFIX}_chat_turns", "Chat turns ended, by outcome", ["outcome"]),
        sse_subscribers=Gauge(
            f"{PREFIX}_sse_subscribers",
            "Open server-sent event streams, by stream",
            ["stream"],
            multiprocess_mode="livesum",
        ),
        schedule_fires=Counter(
            f"{PREFIX}_schedule_fires", "Schedule fires handled, by outcome", ["outcome"]
        ),
        schedule_misses=Counter(
            f"{PREFIX}_schedule_missed_fires",
            "Fire times that passed while no scheduler ran, coalesced into a later fire",
        ),
        provider_requests=Counter(
            f"{PREFIX}_provider_requests",
            "Requests runs made to model providers",
            ["provider", "kind"],
        ),
        provider_errors=Counter(
            f"{PREFIX}_provider_errors",
            "Runs that ended on a provider's error",
            ["provider", "kind"],
        ),
        provider_tokens=Counter(
            f"{PREFIX}_provider_tokens",
            "Tokens providers reported, by direction",
            ["provider", "kind", "direction"],
        ),
        board_write_retries=Counter(
            f"{PREFIX}_board_write_retries",
            "Board write transactions tried again because the board was locked",
            ["function"],
        ),
    )


def _forget_dead_processes(folder: Path) -> None:
    """Drop the live gauges of processes that are gone (a web process that
    crashed and was restarted), so its open streams do not count forever."""
    from prometheus_client import multiprocess

    from crewboard.processes import pid_alive

    for path in folder.glob("gauge_live*_*.db"):
        pid_text = path.stem.rsplit("_", 1)[-1]
        if pid_text.isdigit() and not pid_alive(int(pid_text)):
            multiprocess.mark_process_dead(int(pid_text), str(folder))


def enabled() -> bool:
    return _metrics is not None


def run_finished(outcome: str, duration_s: float, queued_s: float) -> None:
    """A job's run ended with ``outcome`` after ``duration_s``, having waited
    ``queued_s`` for a runner."""
    if _metrics is None:
        return
    _metrics.runs.labels(outcome).inc()
    _metrics.run_duration.labels(outcome).observe(duration_s)
    _metrics.queue_wait.observe(queued_s)


def run_recovered(outcome: str) -> None:
    """A run whose supervisor died was closed by recovery with ``outcome``
    (its length and wait are unknown: counted, not timed)."""
    if _metrics is not None:
        _metrics.runs.labels(outcome).inc()


def chat_turn_finished(outcome: str) -> None:
    if _metrics is not None:
        _metrics.chat_turns.labels(outcome).inc()


def provider_usage(provider: str, kind: str, terminal: Mapping[str, Any] | None) -> None:
    """Count what a run (``kind``: job or chat) asked of ``provider``, from
    its terminal record: the ``usage`` it reports (requests, tokens) and
    whether it ended on the provider's error."""
    if _metrics is None or terminal is None:
        return
    usage = terminal.get("usage")
    if isinstance(usage, Mapping):
        requests = usage.get("requests")
        if isinstance(requests, int) and requests > 0:
            _metrics.provider_requests.labels(provider, kind).inc(requests)
        for direction, key in (("input", "inputTokens"), ("output", "outputTokens")):
            tokens = usage.get(key)
            if isinstance(tokens, int) and tokens > 0:
                _metrics.provider_tokens.labels(provider, kind, direction).inc(tokens)
    if terminal.get("providerError") is True:
        _metrics.provider_errors.labels(provider, kind).inc()


def schedule_fired(outcome: str, missed: int) -> None:
    """A schedule's fire was handled (``outcome``), coalescing ``missed``
    due fire times into it (1: only its own)."""
    if _metrics is None:
        return
    _metrics.schedule_fires.labels(outcome).inc()
    if missed > 1:
        _metrics.schedule_misses.inc(missed - 1)


def board_write_retried(function: str) -> None:
    if _metrics is not None:
        _metrics.board_write_retries.labels(function).inc()


@contextmanager
def sse_subscriber(stream: str) -> Iterator[None]:
    """Count an open SSE stream for as long as the block runs."""
    if _metrics is None:
        yield
        return
    gauge = _metrics.sse_subscribers.labels(stream)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


@dataclass(frozen=True)
class BoardGauges:
    """What the board says at scrape time (``board/gauges.py`` reads it)."""

    jobs_by_status: Mapping[str, int]
    runners_running: int
    runners_capacity: int
    supervisors_live: int


class _BoardCollector:
    """Hands prometheus-client the board's gauges of one scrape."""

    def __init__(self, gauges: BoardGauges) -> None:
        self.gauges = gauges

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        jobs = GaugeMetricFamily(
            f"{PREFIX}_jobs", "Jobs on the board, by status", labels=["status"]
        )
        for status, count in sorted(self.gauges.jobs_by_status.items()):
            jobs.add_metric([status], count)
        yield jobs
        yield GaugeMetricFamily(
            f"{PREFIX}_runners_running",
            "Runs running now, over the live supervisors",
            value=self.gauges.runners_running,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_runners_capacity",
            "Runs the live supervisors may run at once",
            value=self.gauges.runners_capacity,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_supervisors_live",
            "Supervisors whose heartbeat is fresh",
            value=self.gauges.supervisors_live,
        )

    def describe(self) -> list[Any]:
        return []


def exposition(gauges: BoardGauges) -> tuple[bytes, str]:
    """The text a scrape gets: every process's counts and the board's
    gauges, in the Prometheus text format, with its content type."""
    if _metrics is None:
        raise RuntimeError("metrics are not enabled in this process")
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(_BoardCollector(gauges))
    return generate_latest(registry), CONTENT_TYPE_LATEST
