"""Webhook deliveries on PostgreSQL, where transactions do run side by side:
two senders racing for the same due deliveries never both take one, and the
last two jobs of a crew settling at the same moment queue the crew's
delivery exactly once."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

import pytest

from crewboard.board import db, dispatch
from crewboard.board import webhooks as board_webhooks
from crewboard.board.models import Crew, RunOutcome, WebhookDelivery
from crewboard.clock import utcnow
from crewboard.home import Home
from tests.support import crews
from tests.support.crews import JobDef

pytestmark = pytest.mark.postgres


def in_threads(*work: Callable[[], object]) -> list[object]:
    """Run each callable on its own thread (its own connection), started together."""
    barrier = threading.Barrier(len(work))
    results: list[object] = [None] * len(work)

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work[i]()
        finally:
            db.close()  # this thread's connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def hooked_pair(home: Home) -> tuple[int, int]:
    """A crew of two parallel jobs posting to a webhook, both running."""
    ids = crews.add_crew({"a": JobDef(), "b": JobDef()})
    Crew.update(webhook_url="https://hooks.example.test/").where(
        Crew.id == crews.job(ids["a"]).crew_id
    ).execute()
    runs = []
    for _ in ids:
        claim = dispatch.claim_ready_job("sup", home.run_log, now=utcnow())
        assert claim is not None
        runs.append(claim.run_id)
    return runs[0], runs[1]


def succeed(run_id: int) -> None:
    assert dispatch.finish_run(run_id, RunOutcome.SUCCEEDED, result="ok", now=utcnow())


def test_two_jobs_settling_at_once_queue_their_crews_delivery_once(pg) -> None:
    for _ in range(10):
        in_threads(*(functools.partial(succeed, run_id) for run_id in hooked_pair(pg[1])))
    kinds = [d.event_type for d in WebhookDelivery.select()]
    assert kinds.count("job.finished") == 20
    assert kinds.count("crew.finished") == 10


def test_racing_senders_never_take_one_delivery_twice(pg) -> None:
    for _ in range(10):
        for run_id in hooked_pair(pg[1]):
            succeed(run_id)
    total = WebhookDelivery.select().count()
    now = utcnow()

    def drain(name: str) -> Callable[[], list[int]]:
        def take() -> list[int]:
            got: list[int] = []
            while batch := board_webhooks.claim_due(name, now=now, lease_s=60, limit=2):
                got.extend(d.id for d in batch)
            return got

        return take

    a, b = in_threads(drain("sup-a"), drain("sup-b"))
    assert isinstance(a, list) and isinstance(b, list)
    assert sorted(a + b) == sorted(d.id for d in WebhookDelivery.select())
    assert len(a) + len(b) == total == 30
