"""Retention: the board's side of pruning what has aged out, and of
sweeping a home of the files of what left the board.

A :class:`RetentionPolicy` says how many days finished jobs (per status),
chat sessions and job-less events are kept; nothing is pruned when no number
is set. Each transition here is one short write transaction over a small
batch, so the pruner (``supervisor/retention.py``) never holds the write lock
for long; the caller removes the files of what went (``home.py``) after the
transaction commits.

Two rules hold whatever the ages: a running job is never pruned, and neither
is a job that a job staying on the board depends on (its results feed that
job's prompt). A batch is therefore closed under descendants: a job goes only
with every job below it, and only if each of them is old enough.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import peewee

from crewboard.board.db import write
from crewboard.board.job_views import CHUNK
from crewboard.board.jobs import _remove, _run_ids_of
from crewboard.board.models import (
    ChatSession,
    Event,
    Heartbeat,
    Job,
    JobEdge,
    JobStatus,
    Run,
    RunOutcome,
)
from crewboard.config import Config

RETENTION = "retention"
# The statuses a job may be pruned from: finished ones, and archived.
PRUNABLE = (JobStatus.DONE, JobStatus.BLOCKED, JobStatus.ARCHIVED)
# Oldest candidate jobs looked at per batch; their descendants come along.
BATCH_JOBS = 100
# Pages of candidates one batch may look through when the oldest ones must
# stay (a young or running job depends on them), before it gives up the lock.
PAGES_PER_BATCH = 5
BATCH_ROWS = 1000  # chat sessions or events per batch


@dataclass(frozen=True)
class RetentionPolicy:
    """Days to keep things once they are finished (None: keep them)."""

    days: float | None = None
    job_days: Mapping[str, float | None] = field(default_factory=dict)
    chat_days: float | None = None

    @classmethod
    def from_config(cls, config: Config, *, days: float | None = None) -> RetentionPolicy:
        """The configured policy; ``days`` replaces ``CREWBOARD_RETENTION_DAYS``."""
        base = days if days is not None else config.retention_days
        per_status = {
            JobStatus.DONE: config.retention_days_done,
            JobStatus.BLOCKED: config.retention_days_blocked,
            JobStatus.ARCHIVED: config.retention_days_archived,
        }
        return cls(
            days=base,
            job_days={s: d if d is not None else base for s, d in per_status.items()},
            chat_days=config.retention_days_chat
            if config.retention_days_chat is not None
            else base,
        )

    @property
    def enabled(self) -> bool:
        return any(d is not None for d in (self.days, self.chat_days, *self.job_days.values()))

    def job_cutoffs(self, *, now: datetime) -> dict[str, datetime]:
        """Per prunable status, the last change before which a job may go."""
        return {
            status: now - timedelta(days=d)
            for status, d in self.job_days.items()
            if d is not None and status in PRUNABLE
        }

    def chat_cutoff(self, *, now: datetime) -> datetime | None:
        return None if self.chat_days is None else now - timedelta(days=self.chat_days)

    def event_cutoff(self, *, now: datetime) -> datetime | None:
        return None if self.days is None else now - timedelta(days=self.days)

    def describe(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "jobs": {str(s): d for s, d in self.job_days.items()},
            "chats": self.chat_days,
        }


@dataclass
class JobBatch:
    """Jobs chosen (or pruned) in one batch. ``after`` is where the next
    batch starts looking; None when no older candidates are left."""

    jobs: list[Job] = field(default_factory=list)
    run_ids: list[int] = field(default_factory=list)
    after: tuple[datetime, int] | None = None

    @property
    def job_ids(self) -> list[int]:
        return sorted(job.id for job in self.jobs)


# --- jobs ---------------------------------------------------------------------


def _expired(cutoffs: Mapping[str, datetime]) -> Any:
    """A peewee condition: the job's status is prunable and its last change
    is older than that status's cutoff."""
    condition: Any = None
    for status, cutoff in cutoffs.items():
        term = (Job.status == status) & (Job.updated_at < cutoff)
        condition = term if condition is None else condition | term
    return condition


def _is_expired(job: Job, cutoffs: Mapping[str, datetime]) -> bool:
    cutoff = cutoffs.get(job.status)
    return cutoff is not None and job.updated_at < cutoff


def _subgraph(roots: Iterable[int]) -> tuple[set[int], list[tuple[int, int]]]:
    """``roots`` and every job below them, with the edges among them."""
    found = set(roots)
    edges: list[tuple[int, int]] = []
    frontier = sorted(found)
    while frontier:
        step: set[int] = set()
        for start in range(0, len(frontier), CHUNK):
            chunk = frontier[start : start + CHUNK]
            for edge in JobEdge.select(JobEdge.parent, JobEdge.child).where(
                JobEdge.parent.in_(chunk)
            ):
                edges.append((edge.parent_id, edge.child_id))
                step.add(edge.child_id)
        frontier = sorted(step - found)
        found |= step
    return found, edges


def _load(job_ids: Iterable[int]) -> dict[int, Job]:
    ids = sorted(job_ids)
    jobs: dict[int, Job] = {}
    for start in range(0, len(ids), CHUNK):
        for job in Job.select().where(Job.id.in_(ids[start : start + CHUNK])):
            jobs[job.id] = job
    return jobs


def _prunable(roots: list[int], cutoffs: Mapping[str, datetime]) -> list[Job]:
    """Of ``roots`` and the jobs below them, those whose every descendant
    (themselves included) is expired: a set closed under descendants."""
    ids, edges = _subgraph(roots)
    jobs = _load(ids)
    kept = {i for i in ids if i not in jobs or not _is_expired(jobs[i], cutoffs)}
    parents: dict[int, list[int]] = defaultdict(list)
    for parent, child in edges:
        parents[child].append(parent)
    frontier = list(kept)
    while frontier:
        child = frontier.pop()
        for parent in parents[child]:
            if parent not in kept:
                kept.add(parent)
                frontier.append(parent)
    return [jobs[job_id] for job_id in sorted(ids - kept)]


def select_jobs(
    policy: RetentionPolicy,
    *,
    now: datetime,
    after: tuple[datetime, int] | None = None,
    limit: int = BATCH_JOBS,
) -> JobBatch:
    """The next batch of jobs to prune, oldest first, starting past
    ``after``; reads only."""
    cutoffs = policy.job_cutoffs(now=now)
    batch = JobBatch(after=after)
    if not cutoffs:
        batch.after = None
        return batch
    for _ in range(PAGES_PER_BATCH):
        query = Job.select(Job.id, Job.updated_at).where(_expired(cutoffs))
        if batch.after is not None:
            at, job_id = batch.after
            query = query.where(
                (Job.updated_at > at) | ((Job.updated_at == at) & (Job.id > job_id))
            )
        page = list(query.order_by(Job.updated_at, Job.id).limit(limit))
        if page:
            batch.after = (page[-1].updated_at, page[-1].id)
            batch.jobs = _prunable([job.id for job in page], cutoffs)
        if len(page) < limit:
            batch.after = None
        if batch.jobs or batch.after is None:
            break
    return batch


@write
def prune_jobs(
    policy: RetentionPolicy,
    *,
    now: datetime,
    after: tuple[datetime, int] | None = None,
    limit: int = BATCH_JOBS,
) -> JobBatch:
    """Delete the next batch of expired jobs with their runs, edges, events
    and comments (and crews left empty), in one transaction; returns what
    went, with the run ids whose files the caller removes."""
    batch = select_jobs(policy, now=now, after=after, limit=limit)
    if batch.jobs:
        days = ", ".join(f"{s} {d:g}" for s, d in policy.job_days.items() if d is not None)
        batch.run_ids = _remove(
            batch.jobs, RETENTION, f"pruned by retention (days kept: {days})", now=now
        )
    return batch


# --- chat sessions, events, heartbeats ----------------------------------------


def select_chats(
    policy: RetentionPolicy, *, now: datetime, limit: int | None = BATCH_ROWS
) -> list[int]:
    """Chat sessions untouched since the chat cutoff, oldest first (at most
    ``limit``; None: all)."""
    cutoff = policy.chat_cutoff(now=now)
    if cutoff is None:
        return []
    query = (
        ChatSession.select(ChatSession.id)
        .where(ChatSession.updated_at < cutoff)
        .order_by(ChatSession.updated_at, ChatSession.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return [row.id for row in query]


@write
def prune_chats(policy: RetentionPolicy, *, now: datetime, limit: int = BATCH_ROWS) -> list[int]:
    """Delete the next batch of chat sessions untouched since the cutoff;
    returns their ids, whose logs and files the caller removes. A session
    used meanwhile is kept (the delete is guarded by its age)."""
    cutoff = policy.chat_cutoff(now=now)
    ids = select_chats(policy, now=now, limit=limit)
    if not ids or cutoff is None:
        return []
    gone = [
        row.id
        for row in ChatSession.select(ChatSession.id).where(
            ChatSession.id.in_(ids) & (ChatSession.updated_at < cutoff)
        )
    ]
    ChatSession.delete().where(ChatSession.id.in_(gone)).execute()
    return sorted(gone)


def _old_events(cutoff: datetime) -> peewee.ModelSelect[Event]:
    # Events of jobs go with their jobs; these are the schedules' events and
    # the records of deletions, which no job's timeline needs.
    return Event.select(Event.id).where(Event.job.is_null() & (Event.created_at < cutoff))


def count_events(policy: RetentionPolicy, *, now: datetime) -> int:
    cutoff = policy.event_cutoff(now=now)
    return 0 if cutoff is None else _old_events(cutoff).count()


@write
def purge_events(policy: RetentionPolicy, *, now: datetime, limit: int = BATCH_ROWS) -> int:
    """Delete up to ``limit`` job-less events older than the cutoff; returns
    how many went."""
    cutoff = policy.event_cutoff(now=now)
    if cutoff is None:
        return 0
    ids = [row.id for row in _old_events(cutoff).order_by(Event.id).limit(limit)]
    return Event.delete().where(Event.id.in_(ids)).execute() if ids else 0


@write
def purge_heartbeats(policy: RetentionPolicy, *, now: datetime) -> int:
    """Delete the heartbeat rows of supervisors silent since the cutoff that
    no live run names (recovery still needs those)."""
    cutoff = policy.event_cutoff(now=now)
    if cutoff is None:
        return 0
    owners = Run.select(Run.supervisor_id).where(Run.outcome == RunOutcome.RUNNING)
    return (
        Heartbeat.delete()
        .where((Heartbeat.beat_at < cutoff) & Heartbeat.supervisor_id.not_in(owners))
        .execute()
    )


# --- files of what another node deleted ---------------------------------------


def _present(model: Any, ids: Iterable[int]) -> set[int]:
    wanted = sorted(ids)
    found: set[int] = set()
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        found.update(row.id for row in model.select(model.id).where(model.id.in_(chunk)))
    return found


def gone_from_board(run_ids: Iterable[int], chat_ids: Iterable[int]) -> tuple[list[int], list[int]]:
    """Of these run and chat session ids (found in a home), those no longer
    on the board: their files are left over from a delete, a purge or a
    prune made elsewhere. Reads only."""
    runs, chats = set(run_ids), set(chat_ids)
    return sorted(runs - _present(Run, runs)), sorted(chats - _present(ChatSession, chats))


# --- what would go ------------------------------------------------------------


@dataclass
class PrunePlan:
    """What a pass would prune now (``crewboard prune --dry-run``)."""

    jobs: dict[int, str] = field(default_factory=dict)  # id -> status
    run_ids: list[int] = field(default_factory=list)
    chat_ids: list[int] = field(default_factory=list)
    events: int = 0


def plan_prune(policy: RetentionPolicy, *, now: datetime) -> PrunePlan:
    """Everything a pass would prune at ``now``; reads only."""
    plan = PrunePlan()
    after = None
    while True:
        batch = select_jobs(policy, now=now, after=after)
        plan.jobs.update((job.id, job.status) for job in batch.jobs)
        if batch.after is None:
            break
        after = batch.after
    plan.run_ids = _run_ids_of(sorted(plan.jobs))
    plan.chat_ids = select_chats(policy, now=now, limit=None)
    plan.events = count_events(policy, now=now)
    return plan
