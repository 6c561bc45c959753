"""The pruner: the supervisor's slow loop that keeps the board and the home
from growing for ever, by the policy of ``CREWBOARD_RETENTION_DAYS`` and its
per-status overrides (``board/retention.py`` says what may go). What other
hosts' nodes delete leaves this home through its sweep
(``board/sweep.py``), which every supervisor and web node runs.

Every :data:`~crewboard.config.Config.retention_every_s` it runs a pass:
batch after batch of expired jobs (one short write transaction each, then
their runs' files), then chat sessions with their files, then job-less
events and the heartbeats of long-gone supervisors. It pauses between
batches so dispatches and finishing runs get the write lock in between: the
pruner is never on their path. ``crewboard prune`` runs the same pass once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import trio

from crewboard.board import db, retention
from crewboard.board.retention import RetentionPolicy
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.home import Home

log = logging.getLogger(__name__)

# Between two batches: room for the hot path's writes.
PAUSE_S = 0.2


@dataclass
class PruneReport:
    """What a pass removed."""

    job_ids: list[int] = field(default_factory=list)
    run_ids: list[int] = field(default_factory=list)
    chat_ids: list[int] = field(default_factory=list)
    events: int = 0
    heartbeats: int = 0

    def __bool__(self) -> bool:
        return bool(self.job_ids or self.chat_ids or self.events or self.heartbeats)

    def summary(self) -> str:
        return (
            f"{len(self.job_ids)} job(s) with {len(self.run_ids)} run(s), "
            f"{len(self.chat_ids)} chat session(s), {self.events} event(s), "
            f"{self.heartbeats} old heartbeat(s)"
        )


async def run_prune_pass(
    policy: RetentionPolicy,
    home: Home,
    *,
    pause_s: float = PAUSE_S,
    clock: Callable[[], datetime] = utcnow,
) -> PruneReport:
    """Prune everything the policy lets go, batch by batch; returns what went."""
    report = PruneReport()
    after = None
    while True:
        batch = await db.call(retention.prune_jobs, policy, now=clock(), after=after)
        if batch.jobs:
            report.job_ids.extend(batch.job_ids)
            report.run_ids.extend(batch.run_ids)
            # After the commit: a crash here leaves files, never rows without them.
            await trio.to_thread.run_sync(home.remove_run_files, batch.run_ids)
        if batch.after is None:
            break
        after = batch.after
        await trio.sleep(pause_s)
    while chat_ids := await db.call(retention.prune_chats, policy, now=clock()):
        report.chat_ids.extend(chat_ids)
        for chat_id in chat_ids:
            await trio.to_thread.run_sync(home.remove_chat_files, chat_id)
        await trio.sleep(pause_s)
    while purged := await db.call(retention.purge_events, policy, now=clock()):
        report.events += purged
        await trio.sleep(pause_s)
    report.heartbeats = await db.call(retention.purge_heartbeats, policy, now=clock())
    return report


async def serve_pruner(
    config: Config,
    home: Home,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Prune on a slow cadence until cancelled: a pass now, then one every
    ``config.retention_every_s``. Returns at once when retention is off."""
    policy = RetentionPolicy.from_config(config)
    task_status.started()
    if not policy.enabled:
        return
    log.info("retention on: %s", policy.describe())
    while True:
        try:
            report = await run_prune_pass(policy, home)
        except Exception:
            # Nothing waits on pruning; the next pass tries again.
            log.exception("pruning failed")
        else:
            if report:
                log.info("pruned %s", report.summary())
        await trio.sleep(config.retention_every_s)
