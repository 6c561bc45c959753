"""The webhook sender: the supervisor's poller of due webhook deliveries.

Each round claims the deliveries that are due (:func:`crewboard.board.webhooks.claim_due`,
a guarded claim, so several supervisors on one board never send one at once),
POSTs each, concurrently, and writes the outcome back to the board, which
schedules the next try after a failure. It then sleeps until the next poll,
the next delivery coming due, or a wake-up (a job settled, so perhaps queued
one), whichever is first (:func:`~crewboard.supervisor.polling.serve_polling`).

Before each attempt the target's host is resolved and vetted again
(:func:`crewboard.webhooks.vet_url`): an answer that now points inside is
refused unless allow-listed, and the request goes to the vetted address
itself (with the URL's host in ``Host`` and TLS's server name), so a second
DNS answer cannot swap in another. Redirects are not followed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import httpx
import trio

from crewboard.board import db
from crewboard.board import webhooks as board_webhooks
from crewboard.board.webhooks import Outgoing, RetryPolicy
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.netguard import AllowList, Resolver, system_resolver
from crewboard.supervisor.polling import next_delay_s, serve_polling
from crewboard.supervisor.wake import Wakeup
from crewboard.webhooks import BadWebhookUrl, signed_headers, target, vet_url

log = logging.getLogger(__name__)

# Deliveries claimed (and sent concurrently) per round.
BATCH = 16
USER_AGENT = "crewboard-webhooks/1"


class Sender:
    """Sends this supervisor's share of the board's due webhook deliveries."""

    def __init__(
        self,
        supervisor_id: str,
        config: Config,
        *,
        resolver: Resolver = system_resolver,
        spread: Callable[[], float] = random.random,
    ) -> None:
        self.supervisor_id = supervisor_id
        self.poll_s = config.poll_s
        self.timeout_s = config.webhook_timeout_s
        # A claim outlives the attempt it covers by a wide margin: a sender
        # only loses its claim to another by dying.
        self.lease_s = 2 * config.webhook_timeout_s + 60
        self.allow = AllowList.parse(config.webhook_allow)
        self.policy = RetryPolicy(
            base_s=config.webhook_retry_s,
            cap_s=config.webhook_retry_cap_s,
            give_up_s=config.webhook_give_up_s,
        )
        self.resolver = resolver
        self.spread = spread

    async def run_round(self) -> float:
        """Send what is due; returns the delay until the next round."""
        claimed = await db.call(
            board_webhooks.claim_due,
            self.supervisor_id,
            now=utcnow(),
            lease_s=self.lease_s,
            limit=BATCH,
        )
        if claimed:
            await self._send_batch(claimed)
        if len(claimed) == BATCH:
            return 0.0  # perhaps more are due
        now = utcnow()
        return next_delay_s(now, await db.call(board_webhooks.next_due_at), self.poll_s)

    async def _send_batch(self, claimed: list[Outgoing]) -> None:
        """Send the claimed deliveries at once, then record every outcome in
        one transaction."""
        errors: dict[int, str | None] = {}

        async def send(client: httpx.AsyncClient, delivery: Outgoing) -> None:
            errors[delivery.id] = await self.attempt(client, delivery)

        try:
            async with (
                httpx.AsyncClient(
                    timeout=self.timeout_s, trust_env=False, follow_redirects=False
                ) as client,
                trio.open_nursery() as nursery,
            ):
                for delivery in claimed:
                    nursery.start_soon(send, client, delivery)
        except BaseException:
            # Stopping mid-send: hand the batch back for the next sender (a
            # receiver may see an attempt again, with the same webhook-id).
            with trio.CancelScope(shield=True):
                for delivery in claimed:
                    await db.call(
                        board_webhooks.release, delivery.id, self.supervisor_id, now=utcnow()
                    )
            raise
        statuses = await db.call(
            board_webhooks.record_attempts,
            self.supervisor_id,
            {d.id: (errors[d.id], self.spread()) for d in claimed},
            policy=self.policy,
            now=utcnow(),
        )
        for delivery in claimed:
            error = errors[delivery.id]
            log.info(
                "webhook %s (%s, attempt %d) to %s: %s%s",
                delivery.message_id,
                delivery.event_type,
                delivery.attempt,
                delivery.url,
                statuses[delivery.id],
                f" ({error})" if error else "",
            )

    async def attempt(self, client: httpx.AsyncClient, delivery: Outgoing) -> str | None:
        """POST one attempt; None if the receiver took it (2xx), else why not."""
        try:
            address = await trio.to_thread.run_sync(
                vet_url, delivery.url, self.allow, self.resolver
            )
        except BadWebhookUrl as exc:
            return str(exc)
        host, _ = target(delivery.url)
        url = httpx.URL(delivery.url)
        timestamp = int(utcnow().timestamp())
        headers = signed_headers(delivery.secrets, delivery.message_id, timestamp, delivery.body)
        headers["host"] = url.netloc.decode("ascii")
        headers["user-agent"] = USER_AGENT
        extensions = {"sni_hostname": host} if url.scheme == "https" else {}
        request = client.build_request(
            "POST",
            url.copy_with(host=str(address)),
            content=delivery.body,
            headers=headers,
            extensions=extensions,
        )
        try:
            # Only the status matters: the answer's body is never read.
            response = await client.send(request, stream=True)
            await response.aclose()
        except httpx.TimeoutException:
            return f"no answer within {self.timeout_s:g} s"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"


async def serve_webhooks(
    sender: Sender,
    wakeup: Wakeup,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Send due deliveries until cancelled, woken early by ``wakeup``. Ready
    once the first round has looked at the board."""
    await serve_polling(
        sender.run_round, wakeup, name="webhooks", retry_s=sender.poll_s, task_status=task_status
    )
