"""What each user holds of the things :mod:`crewboard.limits` counts
(schedules, queued jobs, saved chat sessions), and the check that keeps an
insert within the limit.

:func:`check_room` runs inside the write transaction that inserts: on
SQLite that transaction already holds the write lock (``BEGIN IMMEDIATE``);
on PostgreSQL it first locks the owner's user row, so two requests of one
user count one after the other and parallel requests cannot overshoot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import peewee

from crewboard import limits
from crewboard.board.db import database, is_sqlite
from crewboard.board.models import ChatSession, Job, JobStatus, Schedule, User
from crewboard.limits import Limit

QUEUED = (JobStatus.WAITING, JobStatus.READY)


def count_schedules(owner_id: int) -> int:
    return Schedule.select().where(Schedule.owner == owner_id).count()


def count_queued_jobs(owner_id: int) -> int:
    return Job.select().where((Job.owner == owner_id) & Job.status.in_(QUEUED)).count()


def count_sessions(owner_id: int) -> int:
    return ChatSession.select().where(ChatSession.owner == owner_id).count()


_COUNTERS: dict[str, Callable[[int], int]] = {
    limits.SCHEDULES.key: count_schedules,
    limits.QUEUED_JOBS.key: count_queued_jobs,
    limits.SESSIONS.key: count_sessions,
}


def check_room(limit: Limit, owner_id: int, max_count: int | None, adding: int = 1) -> None:
    """LimitReached if the owner adding ``adding`` more would pass
    ``max_count`` (None or 0: no limit). Call inside the inserting write
    transaction."""
    if not max_count:
        return
    assert database.in_transaction(), "check_room must run in the inserting transaction"
    if not is_sqlite():
        User.select(User.id).where(User.id == owner_id).for_update().first()
    limits.check_count(limit, max_count, _COUNTERS[limit.key](owner_id), adding)


def _grouped(query: Any, owner: peewee.Field) -> dict[int, int]:
    """How many rows of ``query`` each owner has, by owner id."""
    rows = query.select(owner, peewee.fn.COUNT(peewee.SQL("*"))).group_by(owner).tuples()
    return {owner_id: count for owner_id, count in rows}


def usage_by_user() -> dict[int, dict[str, int]]:
    """Each user's counts, by user id and limit key (every user, zeros included)."""
    counts = {
        limits.SCHEDULES.key: _grouped(Schedule.select(), Schedule.owner),
        limits.QUEUED_JOBS.key: _grouped(Job.select().where(Job.status.in_(QUEUED)), Job.owner),
        limits.SESSIONS.key: _grouped(ChatSession.select(), ChatSession.owner),
    }
    return {
        user.id: {key: by_owner.get(user.id, 0) for key, by_owner in counts.items()}
        for user in User.select(User.id)
    }
