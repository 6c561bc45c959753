"""Putting jobs on the board for supervisor tests, straight through the board
models, and reading back what became of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from crewboard.board import dispatch
from crewboard.board import jobs as board_jobs
from crewboard.board.db import write
from crewboard.board.models import Crew, Job, JobEdge, JobStatus, Run, RunOutcome, User
from crewboard.clock import utcnow
from crewboard.workflows.templates import CrewPlan, PlannedJob


@dataclass
class JobDef:
    """One job of a test crew: its prompt (offline directives included) and
    the keys of the jobs it needs."""

    prompt: str = "Say hello."
    needs: Sequence[str] = ()
    agent: str = "assistant"
    timeout_s: int = 60
    retries: int = 0
    artifact: str | None = None
    scheduled_at: datetime | None = None
    title: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


def _owner_id() -> int:
    user = User.get_or_none(User.email == "crews@example.test")
    if user is None:
        user = User.create(email="crews@example.test", name="crews", created_at=utcnow())
    return user.id


@write
def add_crew(jobs: Mapping[str, JobDef], title: str = "test crew") -> dict[str, int]:
    """Insert a crew of jobs with their edges; returns job ids by key. Jobs
    with no parents and no future scheduled time start ``ready``."""
    now = utcnow()
    owner = _owner_id()
    crew = Crew.create(template_id="test", title=title, inputs={}, owner=owner, created_at=now)
    ids: dict[str, int] = {}
    for key, spec in jobs.items():
        waits = bool(spec.needs) or (spec.scheduled_at is not None and spec.scheduled_at > now)
        values: dict[str, object] = dict(
            crew=crew,
            owner=owner,
            key=key,
            title=spec.title or key,
            agent=spec.agent,
            prompt=spec.prompt,
            artifact_name=spec.artifact,
            status=JobStatus.WAITING if waits else JobStatus.READY,
            scheduled_at=spec.scheduled_at,
            available_at=spec.scheduled_at or now,
            timeout_s=spec.timeout_s,
            max_retries=spec.retries,
            created_at=now,
            updated_at=now,
        )
        job = Job.create(**{**values, **spec.extra})
        ids[key] = job.id
    for key, spec in jobs.items():
        for parent in spec.needs:
            JobEdge.create(parent=ids[parent], child=ids[key])
    return ids


def add_job(prompt: str = "Say hello.", **kwargs: object) -> int:
    """A crew of one job; returns its id."""
    return add_crew({"only": JobDef(prompt=prompt, **kwargs)})["only"]  # type: ignore[arg-type]


@write
def request_cancel(job_id: int) -> None:
    """What the web's cancel does for a running job: raise the flag."""
    Job.update(cancel_requested=True).where(Job.id == job_id).execute()


def job(job_id: int) -> Job:
    return Job.get_by_id(job_id)


def runs(job_id: int) -> list[Run]:
    return list(Run.select().where(Run.job == job_id).order_by(Run.id))


def live_runs() -> list[Run]:
    return list(Run.select().where(Run.outcome == RunOutcome.RUNNING))


def backlog(owner: int, count: int, prompt: str = "Say hello.") -> list[int]:
    """``count`` independent jobs of ``owner``, in one crew; their ids, oldest first."""
    # key, title, agent, prompt, needs, artifact, timeout_s, retries
    planned = tuple(
        PlannedJob(f"j{i}", f"job {i}", "assistant", prompt, (), None, 120, 0) for i in range(count)
    )
    plan = CrewPlan(template_id="test", title="backlog", inputs={}, jobs=planned)
    _, jobs = board_jobs.create_crew(plan, owner, now=utcnow())
    return [job.id for job in jobs]


def claim_in_turn(
    limit: int, after_owner: int = 0, user_concurrency: int | None = None
) -> list[int]:
    """Claim like a dispatch round with ``limit`` free slots; the jobs claimed, in order."""
    claims = dispatch.claim_ready_jobs(
        "sup",
        lambda run_id: Path(f"{run_id}.jsonl"),
        limit=limit,
        after_owner=after_owner,
        user_concurrency=user_concurrency,
        now=utcnow(),
    )
    return [claim.job_id for claim in claims]
