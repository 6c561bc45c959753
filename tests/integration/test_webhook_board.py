"""Webhook deliveries on a real board.db, driven in virtual time (every board
function takes ``now=``): queued with the settling of a job and of its crew,
claimed by one sender at a time, retried on the backoff schedule, given up
after a day, and each step on the job's timeline."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from crewboard.board import dispatch, jobs
from crewboard.board import webhooks as board_webhooks
from crewboard.board.db import database
from crewboard.board.events import EventKind
from crewboard.board.migrations import MIGRATIONS, _v4_webhooks, migrate
from crewboard.board.models import (
    Crew,
    DeliveryStatus,
    Event,
    Meta,
    RunOutcome,
    WebhookDelivery,
)
from crewboard.board.webhooks import RetryPolicy
from crewboard.home import Home
from tests.support import crews
from tests.support.crews import JobDef

# After the jobs are put on the board (at the real now), so they are due.
T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
HOOK = "https://hooks.example.test/in"
POLICY = RetryPolicy(base_s=5, cap_s=3600, give_up_s=86400, jitter=0.25)
LEASE_S = 80.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def crew_with_hook(jobs_: dict[str, JobDef], url: str | None = HOOK) -> dict[str, int]:
    ids = crews.add_crew(jobs_)
    crew_id = crews.job(next(iter(ids.values()))).crew_id
    Crew.update(webhook_url=url).where(Crew.id == crew_id).execute()
    return ids


def run_job(
    home: Home, job_id: int, outcome: RunOutcome, now: datetime, **kw: object
) -> dispatch.Finished:
    """Claim and finish the job; what became of it (whether the settling
    queued deliveries for the supervisor's sender)."""
    claim = dispatch.claim_ready_job("sup-a", home.run_log, now=now)
    assert claim is not None and claim.job_id == job_id
    finished = dispatch.finish_run(claim.run_id, outcome, now=now, **kw)  # type: ignore[arg-type]
    assert finished is not None
    return finished


def deliveries() -> list[WebhookDelivery]:
    return list(WebhookDelivery.select().order_by(WebhookDelivery.id))


def kinds(job_id: int) -> list[str]:
    return [
        e.kind
        for e in Event.select().where(Event.job == job_id).order_by(Event.id)
        if e.kind.startswith("webhook")
    ]


def test_a_crew_queues_one_delivery_per_job_and_one_for_the_crew(home: Home) -> None:
    ids = crew_with_hook(
        {"a": JobDef(), "b": JobDef(needs=["a"]), "c": JobDef(needs=["a"], retries=1)}
    )
    run_job(home, ids["a"], RunOutcome.SUCCEEDED, at(0), result="A's result")
    dispatch.promote_waiting(now=at(1))
    run_job(home, ids["b"], RunOutcome.SUCCEEDED, at(2), result="B")
    # A failure with a retry left does not finish c: nothing is queued for
    # it, and the sender is not told to look.
    assert not run_job(home, ids["c"], RunOutcome.FAILED, at(3), error="boom").webhooks_queued
    assert [d.event_type for d in deliveries()] == ["job.finished", "job.finished"]
    run_job(home, ids["c"], RunOutcome.FAILED, at(10), error="boom again")

    rows = deliveries()
    assert [d.event_type for d in rows] == ["job.finished"] * 3 + ["crew.finished"]
    assert len({d.message_id for d in rows}) == 4
    first = json.loads(rows[0].body)
    assert first["type"] == "job.finished"
    assert first["data"] | {"finishedAt": None} == {
        "jobId": ids["a"],
        "crewId": crews.job(ids["a"]).crew_id,
        "key": "a",
        "title": "a",
        "templateId": "test",
        "status": "done",
        "result": "A's result",
        "resultTruncated": False,
        "blockedReason": None,
        "finishedAt": None,
    }
    blocked = json.loads(rows[2].body)["data"]
    assert blocked["status"] == "blocked" and "boom again" in blocked["blockedReason"]
    crew = json.loads(rows[3].body)["data"]
    assert crew["status"] == "blocked"
    assert [(j["key"], j["status"]) for j in crew["jobs"]] == [
        ("a", "done"),
        ("b", "done"),
        ("c", "blocked"),
    ]
    assert kinds(ids["c"]) == [EventKind.WEBHOOK_QUEUED, EventKind.WEBHOOK_QUEUED]


def test_a_crew_stuck_behind_a_blocked_job_is_finished_and_a_crew_without_a_url_is_silent(
    home: Home,
) -> None:
    ids = crew_with_hook({"a": JobDef(), "b": JobDef(needs=["a"])})
    assert run_job(home, ids["a"], RunOutcome.BLOCKED, at(0), error="need a person").webhooks_queued
    # b waits on a blocked job: the crew cannot move on without a person.
    assert [d.event_type for d in deliveries()] == ["job.finished", "crew.finished"]
    assert json.loads(deliveries()[1].body)["data"]["status"] == "blocked"

    quiet = crew_with_hook({"x": JobDef()}, url=None)
    assert not run_job(home, quiet["x"], RunOutcome.SUCCEEDED, at(5), result="ok").webhooks_queued
    assert len(deliveries()) == 2


def test_a_user_cancelling_the_last_waiting_job_finishes_the_crew(home: Home) -> None:
    ids = crew_with_hook({"a": JobDef(), "b": JobDef()})
    owner = crews.job(ids["a"]).owner_id
    run_job(home, ids["a"], RunOutcome.SUCCEEDED, at(0), result="ok")
    jobs.request_cancel(ids["b"], owner, now=at(1))
    assert [(d.event_type, d.job_id) for d in deliveries()] == [
        ("job.finished", ids["a"]),
        ("job.finished", ids["b"]),
        ("crew.finished", ids["b"]),
    ]


def test_retries_follow_the_backoff_in_virtual_time_then_give_up_after_a_day(
    home: Home,
) -> None:
    ids = crew_with_hook({"a": JobDef()})
    run_job(home, ids["a"], RunOutcome.SUCCEEDED, at(0), result="ok")
    job_hook = deliveries()[0].id
    WebhookDelivery.delete().where(WebhookDelivery.id != job_hook).execute()

    now = 0.0
    retry_times = []
    for attempt in range(1, 100):
        claimed = board_webhooks.claim_due("sup-a", now=at(now), lease_s=LEASE_S)
        assert [c.id for c in claimed] == [job_hook] and claimed[0].attempt == attempt
        # Nothing is due again for anyone while the claim holds.
        assert board_webhooks.claim_due("sup-b", now=at(now + 1), lease_s=LEASE_S) == []
        status = board_webhooks.record_attempt(
            job_hook, "sup-a", error="HTTP 500", policy=POLICY, spread=0.5, now=at(now + 1)
        )
        if status == DeliveryStatus.FAILED:
            break
        assert status == DeliveryStatus.PENDING
        retry_at = WebhookDelivery.get_by_id(job_hook).next_attempt_at
        delay = (retry_at - at(now + 1)).total_seconds()
        # Not a moment early.
        assert (
            board_webhooks.claim_due(
                "sup-a", now=retry_at - timedelta(seconds=0.01), lease_s=LEASE_S
            )
            == []
        )
        retry_times.append(delay)
        now = (retry_at - T0).total_seconds()
    delays = retry_times[:8]
    assert delays == [5, 10, 20, 40, 80, 160, 320, 640]
    assert max(retry_times) == 3600
    row = WebhookDelivery.get_by_id(job_hook)
    assert row.status == DeliveryStatus.FAILED
    # Given up once the next try would fall after a day; never earlier.
    assert at(now + 1) + timedelta(seconds=3600) > row.created_at + timedelta(days=1)
    assert at(now + 1) <= row.created_at + timedelta(days=1)
    assert board_webhooks.claim_due("sup-a", now=at(now + 10**6), lease_s=LEASE_S) == []
    timeline = kinds(ids["a"])
    assert timeline[0] == EventKind.WEBHOOK_QUEUED
    assert timeline[-1] == EventKind.WEBHOOK_GAVE_UP
    assert timeline.count(EventKind.WEBHOOK_FAILED) == row.attempts - 1


def test_a_claim_lost_to_another_sender_after_its_lease_records_nothing(home: Home) -> None:
    ids = crew_with_hook({"a": JobDef()})
    run_job(home, ids["a"], RunOutcome.SUCCEEDED, at(0), result="ok")
    hook = deliveries()[0]
    WebhookDelivery.delete().where(WebhookDelivery.id != hook.id).execute()
    first = board_webhooks.claim_due("sup-a", now=at(0), lease_s=LEASE_S)
    assert [c.message_id for c in first] == [hook.message_id]
    # sup-a dies mid-send; once its lease runs out sup-b takes the same delivery.
    assert board_webhooks.claim_due("sup-b", now=at(LEASE_S - 1), lease_s=LEASE_S) == []
    second = board_webhooks.claim_due("sup-b", now=at(LEASE_S), lease_s=LEASE_S)
    assert [c.message_id for c in second] == [hook.message_id]
    assert second[0].attempt == 1
    late = board_webhooks.record_attempt(
        hook.id, "sup-a", error=None, policy=POLICY, spread=0.5, now=at(LEASE_S + 1)
    )
    assert late is None
    done = board_webhooks.record_attempt(
        hook.id, "sup-b", error=None, policy=POLICY, spread=0.5, now=at(LEASE_S + 2)
    )
    assert done == DeliveryStatus.DELIVERED
    # Queued for the job and for its one-job crew; the crew's was deleted above.
    assert kinds(ids["a"]) == [EventKind.WEBHOOK_QUEUED] * 2 + [EventKind.WEBHOOK_DELIVERED]


def test_a_stopping_sender_hands_its_claim_back(home: Home) -> None:
    ids = crew_with_hook({"a": JobDef()})
    run_job(home, ids["a"], RunOutcome.SUCCEEDED, at(0), result="ok")
    claimed = board_webhooks.claim_due("sup-a", now=at(0), lease_s=LEASE_S)
    assert len(claimed) == 2
    assert board_webhooks.release(claimed[0].id, "sup-a", now=at(1))
    again = board_webhooks.claim_due("sup-b", now=at(1), lease_s=LEASE_S)
    assert [c.id for c in again] == [claimed[0].id]


def test_deleting_a_job_keeps_its_pending_delivery_going(home: Home) -> None:
    ids = crew_with_hook({"a": JobDef()})
    run_job(home, ids["a"], RunOutcome.SUCCEEDED, at(0), result="ok")
    owner = crews.job(ids["a"]).owner_id
    jobs.delete_job(ids["a"], owner, now=at(1))
    rows = deliveries()
    assert [(d.event_type, d.job_id, d.status) for d in rows] == [
        ("job.finished", None, DeliveryStatus.PENDING),
        ("crew.finished", None, DeliveryStatus.PENDING),
    ]
    claimed = board_webhooks.claim_due("sup-a", now=at(2), lease_s=LEASE_S)
    for c in claimed:
        assert (
            board_webhooks.record_attempt(
                c.id, "sup-a", error=None, policy=POLICY, spread=0.5, now=at(3)
            )
            == DeliveryStatus.DELIVERED
        )


def test_a_board_from_before_webhooks_is_upgraded_in_place(home: Home) -> None:
    before = MIGRATIONS.index(_v4_webhooks)
    ids = crews.add_crew({"a": JobDef()})
    # Take the board back to the schema before webhooks, keeping its rows.
    database.execute_sql('DROP TABLE "webhook_delivery"')
    database.execute_sql('DROP TABLE "webhook_secret"')
    database.execute_sql('ALTER TABLE "crew" DROP COLUMN "webhook_url"')
    database.execute_sql('ALTER TABLE "schedule" DROP COLUMN "webhook_url"')
    Meta.update(value=str(before)).where(Meta.key == "schema_version").execute()
    assert migrate(database.obj) == len(MIGRATIONS)
    assert crews.job(ids["a"]).crew.webhook_url is None
    Crew.update(webhook_url=HOOK).execute()
    run_job(home, ids["a"], RunOutcome.SUCCEEDED, at(0), result="ok")
    assert [d.event_type for d in deliveries()] == ["job.finished", "crew.finished"]


def test_after_a_rotation_both_secrets_sign_for_a_day(home: Home) -> None:
    ids = crew_with_hook({"a": JobDef()})
    owner = crews.job(ids["a"]).owner_id
    old = board_webhooks.signing_secret(owner, now=at(-10)).secret
    new = board_webhooks.rotate_secret(owner, now=at(-5)).secret
    run_job(home, ids["a"], RunOutcome.SUCCEEDED, at(0), result="ok")
    claimed = board_webhooks.claim_due("sup-a", now=at(0), lease_s=LEASE_S)
    assert {c.secrets for c in claimed} == {(new, old)}
    for c in claimed:
        board_webhooks.record_attempt(
            c.id, "sup-a", error="HTTP 503", policy=POLICY, spread=0.5, now=at(1)
        )
    a_day_on = at(-5) + board_webhooks.ROTATION_OVERLAP
    claimed = board_webhooks.claim_due("sup-a", now=a_day_on, lease_s=LEASE_S)
    assert {c.secrets for c in claimed} == {(new,)}
