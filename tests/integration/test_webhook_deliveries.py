"""Webhooks end to end: a real supervisor runs a crew on the offline model and
POSTs its finishes to a real receiver on loopback that fails at first (500s,
then a hang past the sender's timeout) and then recovers. Every request is
checked with Standard Webhooks' own verifier; deliveries are counted; the
supervisor is restarted mid-retry and the delivery still arrives."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from crewboard.board import db, dispatch
from crewboard.board import webhooks as board_webhooks
from crewboard.board.events import EventKind
from crewboard.board.models import (
    Crew,
    DeliveryStatus,
    Event,
    JobStatus,
    RunOutcome,
    WebhookDelivery,
)
from crewboard.bootstrap import open_home
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.supervisor.webhooks import Sender
from tests.conftest import make_config
from tests.support import crews
from tests.support.crews import JobDef
from tests.support.receiver import HANG, Receiver, receiving
from tests.support.supervisor import supervising, wait_for

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = make_config(
        tmp_path / "home",
        webhook_allow=("127.0.0.1",),
        # Long enough that a loaded machine's slow 204 is not taken for the
        # receiver's hang; the hang is held until the receiver closes.
        webhook_timeout_s=2.0,
        webhook_retry_s=0.2,
        webhook_retry_cap_s=1.0,
    )
    open_home(config)
    yield config
    db.close()


def crew_posting_to(url: str, jobs: dict[str, JobDef]) -> dict[str, int]:
    ids = crews.add_crew(jobs)
    Crew.update(webhook_url=url).where(Crew.id == crews.job(ids[next(iter(ids))]).crew_id).execute()
    return ids


def all_delivered(count: int):
    def probe() -> list[WebhookDelivery] | None:
        rows = list(WebhookDelivery.select().order_by(WebhookDelivery.id))
        ok = len(rows) == count and all(r.status == DeliveryStatus.DELIVERED for r in rows)
        return rows if ok else None

    return probe


def verify_all(receiver: Receiver, secret: str) -> list[dict]:
    """Every request the receiver got, checked by the standardwebhooks library."""
    verifier = Webhook(secret)
    return [verifier.verify(r.body, r.headers) for r in receiver.received]


def owner_secret(job_id: int) -> str:
    return board_webhooks.signing_secret(crews.job(job_id).owner_id, now=utcnow()).secret


def webhook_events(job_id: int) -> list[str]:
    rows = Event.select(Event.kind).where(Event.job == job_id).order_by(Event.id)
    return [e.kind for e in rows if e.kind.startswith("webhook")]


async def test_a_crew_finishes_into_a_failing_receiver_that_recovers(config: Config) -> None:
    script = {1: 500, 2: 500, 3: HANG}
    with receiving(lambda nth: script.get(nth, 204)) as receiver:
        ids = await db.call(
            crew_posting_to,
            receiver.url,
            {
                "research": JobDef("Research owls."),
                "draft": JobDef("Draft a note.", needs=["research"]),
                "review": JobDef("Review it.", needs=["research"]),
            },
        )
        async with supervising(config):
            rows = await wait_for(all_delivered(4), timeout_s=60, what="four deliveries")
        secret = await db.call(owner_secret, ids["research"])

    # Each delivery: two 500s, one attempt the sender gave up waiting on, then
    # accepted, the same webhook-id and body every time; every attempt the
    # board counted reached the receiver, and nothing came after the 204.
    for row in rows:
        attempts = receiver.attempts(row.message_id)
        assert [r.answer for r in attempts] == [500, 500, HANG, 204]
        assert row.attempts == 4
        assert {r.body for r in attempts} == {row.body.encode()}
    payloads = verify_all(receiver, secret)
    assert len(payloads) == 16
    accepted = [json.loads(r.body) for r in receiver.accepted()]
    assert sorted(p["type"] for p in accepted) == ["crew.finished"] + ["job.finished"] * 3
    assert {p["data"]["jobId"] for p in accepted if p["type"] == "job.finished"} == set(
        ids.values()
    )
    # The crew's completion was delivered once, after all three jobs were done.
    (crew,) = [p["data"] for p in accepted if p["type"] == "crew.finished"]
    assert crew["status"] == JobStatus.DONE
    assert [j["status"] for j in crew["jobs"]] == ["done"] * 3
    # Someone else's secret does not verify them.
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(board_webhooks.new_secret()).verify(
            receiver.received[0].body, receiver.received[0].headers
        )
    # Each attempt and outcome is on the timeline of the job it came from.
    events = await db.call(webhook_events, ids["research"])
    assert events == [EventKind.WEBHOOK_QUEUED] + [EventKind.WEBHOOK_FAILED] * 3 + [
        EventKind.WEBHOOK_DELIVERED
    ]


async def test_a_finished_job_is_posted_at_once_not_at_the_next_poll(config: Config) -> None:
    # The poll is far longer than the wait: only the run's end, which queued
    # the delivery, can have woken the sender.
    slow_poll = dataclasses.replace(config, poll_s=600.0)
    with receiving(lambda nth: 204) as receiver:
        await db.call(crew_posting_to, receiver.url, {"only": JobDef("Say hello.")})
        async with supervising(slow_poll):
            await wait_for(all_delivered(2), timeout_s=60, what="the job's and the crew's posts")
    accepted = sorted(json.loads(r.body)["type"] for r in receiver.accepted())
    assert accepted == ["crew.finished", "job.finished"]


async def test_a_delivery_survives_a_supervisor_restart_mid_retry(config: Config) -> None:
    recovered = False
    with receiving(lambda nth: 204 if recovered else 503) as receiver:
        ids = await db.call(crew_posting_to, receiver.url, {"only": JobDef("Say hello.")})

        def failed_twice() -> bool:
            return webhook_events(ids["only"]).count(EventKind.WEBHOOK_FAILED) >= 4

        async with supervising(config):
            await wait_for(failed_twice, timeout_s=60, what="two failed attempts of each")
        # Stopped mid-retry: the board still has both deliveries to send.
        pending = await db.call(
            lambda: [r.status for r in WebhookDelivery.select().order_by(WebhookDelivery.id)]
        )
        assert pending == [DeliveryStatus.PENDING] * 2
        before = len(receiver.received)
        recovered = True
        async with supervising(config):
            rows = await wait_for(all_delivered(2), timeout_s=60, what="both delivered")
        secret = await db.call(owner_secret, ids["only"])

    assert before >= 4
    verify_all(receiver, secret)
    for row in rows:
        attempts = receiver.attempts(row.message_id)
        assert [r.answer for r in attempts[:-1]] == [503] * (len(attempts) - 1)
        assert attempts[-1].answer == 204
        assert row.attempts == len(attempts)
    assert len(receiver.accepted()) == 2


def settle(job_id: int, logs: Path) -> None:
    """Finish the job as the supervisor would, without running it."""
    claim = dispatch.claim_ready_job("sup-test", lambda run: logs / f"{run}.jsonl", now=utcnow())
    assert claim is not None and claim.job_id == job_id
    dispatch.finish_run(claim.run_id, RunOutcome.SUCCEEDED, result="hi", now=utcnow())


async def test_the_target_is_vetted_again_before_each_attempt(
    config: Config, tmp_path: Path
) -> None:
    """DNS answers change: a name that now points inside is refused at send
    time, and once it points at an allowed address the request goes to that
    vetted address, with the name in Host."""
    answers = {"hooks.example.test": ["10.0.0.7"]}
    sender = Sender("sup-test", config, resolver=lambda host, port: answers[host])
    with receiving(lambda nth: 204) as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        url = f"http://hooks.example.test:{port}/in"
        ids = await db.call(crew_posting_to, url, {"only": JobDef()})
        await db.call(settle, ids["only"], tmp_path)
        await sender.run_round()
        rows = await db.call(lambda: list(WebhookDelivery.select()))
        assert [r.status for r in rows] == [DeliveryStatus.PENDING] * 2
        assert all("10.0.0.7, a private address" in r.last_error for r in rows)
        assert all("CREWBOARD_WEBHOOK_ALLOW" in r.last_error for r in rows)
        assert receiver.received == []

        answers["hooks.example.test"] = ["127.0.0.1"]
        await db.call(lambda: WebhookDelivery.update(next_attempt_at=utcnow()).execute())
        await sender.run_round()
        assert await db.call(all_delivered(2))
    assert {r.headers["host"] for r in receiver.received} == {f"hooks.example.test:{port}"}
    events = await db.call(webhook_events, ids["only"])
    assert events.count(EventKind.WEBHOOK_FAILED) == 2
    assert events.count(EventKind.WEBHOOK_DELIVERED) == 2
