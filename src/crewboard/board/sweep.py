"""Sweeping a home of the files of runs and chat sessions that left the
board through another host's node.

On a PostgreSQL board shared by several hosts, a delete, purge or prune is
made by one node, which removes only its own home's files: a chat whose
turns ran on web node A and that is deleted through web node B keeps its log
on A's disk. So every supervisor and every web node on such a board sweeps
its own home on the pruner's cadence (``CREWBOARD_RETENTION_EVERY_S``),
whether or not retention is on. On SQLite the board and the home are on one
host, and whoever deletes removes the files there and then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from crewboard.board import db, retention
from crewboard.home import Home

log = logging.getLogger(__name__)


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
    sessions no longer on the board.

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
    """Whether this board's nodes sweep their homes: on PostgreSQL, which
    other hosts' nodes may change."""
    return not db.is_sqlite()


async def serve_sweeps(
    home: Home,
    every_s: float,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Sweep ``home`` now and then every ``every_s`` until cancelled; returns
    at once on SQLite."""
    task_status.started()
    if not sweeps_home():
        return
    while True:
        try:
            report = await sweep_home(home)
        except Exception:
            # Nothing waits on a sweep; the next one tries again.
            log.exception("sweeping the home failed")
        else:
            if report:
                log.info("removed %s", report.summary())
        await trio.sleep(every_s)
