"""The pruner: the supervisor's slow loop that keeps the board and the home
from growing for ever, by the policy of ``CREWBOARD_RETENTION_DAYS`` and its
per-status overrides (``board/retention.py`` says what may go). On a
PostgreSQL board it also sweeps its home of the files of runs and chat
sessions that left the board through another node (:func:`sweep_home`).

Every :data:`~crewboard.config.Config.retention_every_s` it runs a pass:
batch after batch of expired jobs (one short write transaction each, then
their runs' files), then chat sessions with their files, then job-less
events and the heartbeats of long-gone supervisors. It pauses between
batches so dispatches and finishing runs get the write lock in between: the
pruner is never on their path. ``crewboard prune`` runs the same pass once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
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


@dataclass
class SweepReport:
    """The runs and chat sessions whose files a sweep removed."""

    run_ids: list[int] = field(default_factory=list)
    chat_ids: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.run_ids or self.chat_ids)

    def summary(self) -> str:
        return f"the files of {len(self.run_ids)} run(s) and {len(self.chat_ids)} chat session(s)"


async def sweep_home(home: Home) -> SweepReport:
    """Remove this home's logs, saved files and workspaces of runs and chat
    sessions no longer on the board. On a board shared by several hosts a
    delete, purge or prune is made by one node, which removes only its own
    home's files; every other host's supervisor sweeps its own home.

    The home is listed before the board is read, and a run's or session's
    files are only ever made after its row commits: files listed whose row
    the board lacks are left over, never about to be used."""
    run_ids, chat_ids = await trio.to_thread.run_sync(home.ids_with_files)
    if not run_ids and not chat_ids:
        return SweepReport()
    gone_runs, gone_chats = await db.call(retention.gone_from_board, run_ids, chat_ids)
    await trio.to_thread.run_sync(home.remove_run_files, gone_runs)
    for chat_id in gone_chats:
        await trio.to_thread.run_sync(home.remove_chat_files, chat_id)
    return SweepReport(gone_runs, gone_chats)


def sweeps_home() -> bool:
    """Whether the pruner sweeps its home: on a PostgreSQL board, which
    other hosts' nodes may change. On SQLite the board and the home are on
    one host, and whoever deletes removes the files there and then."""
    return not db.is_sqlite()


async def serve_pruner(
    config: Config,
    home: Home,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Prune and sweep on a slow cadence until cancelled: a pass now, then
    one every ``config.retention_every_s``. Returns at once when there is
    nothing to do: retention is off and the board is SQLite."""
    policy = RetentionPolicy.from_config(config)
    sweeping = sweeps_home()
    task_status.started()
    if not policy.enabled and not sweeping:
        return
    if policy.enabled:
        log.info("retention on: %s", policy.describe())
    while True:
        if policy.enabled:
            await _logged(run_prune_pass(policy, home), "pruning", "pruned")
        if sweeping:
            await _logged(sweep_home(home), "sweeping the home", "removed")
        await trio.sleep(config.retention_every_s)


async def _logged(work: Awaitable[PruneReport | SweepReport], what: str, done: str) -> None:
    try:
        report = await work
    except Exception:
        # Nothing waits on pruning or sweeping; the next pass tries again.
        log.exception("%s failed", what)
    else:
        if report:
            log.info("%s %s", done, report.summary())
