"""The run lifecycle of jobs: claiming, starting, finishing and retrying runs
(the runs of a dead supervisor are closed by :mod:`crewboard.board.recovery`,
with the same policy). Only the supervisor calls these; the web process writes user
intent (new jobs, cancel requests…) through :mod:`crewboard.board.jobs`.

Every change of state is one named function doing one short write transaction
(``BEGIN IMMEDIATE`` on SQLite) with a guarded ``UPDATE … WHERE status = …``,
so a lost race is a no-op rather than a corruption, and it records its events
in the same transaction. The failure policy of a finished run is
:func:`settlement`, one small decision per way a run can end; the backoff
between retries is the pure function :func:`retry_delay_s`. A claimed run's
prompt is read from the board here and laid out by
:mod:`crewboard.workflows.run_prompt`.

Claims are fair between users: :func:`claim_ready_jobs` takes owners in
turn, oldest job first within each, never a disabled owner's job, and at
most ``user_concurrency`` running jobs per owner (``_PICK_NEXT``). These
transitions run for every job, so they issue a few named, prepared
statements each (below) rather than peewee-built queries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from crewboard.board import leases, webhooks
from crewboard.board.db import execute, is_sqlite, write
from crewboard.board.events import SUPERVISOR, EventKind, EventRow, record_events
from crewboard.board.models import (
    Event,
    Job,
    JobStatus,
    Run,
    RunOutcome,
    User,
)
from crewboard.clock import iso
from crewboard.workflows.run_prompt import ParentResult, PromptParts, compose_prompt

# The backoff before retry n (1-based) is 2**n seconds, capped.
RETRY_BASE_S = 2.0
RETRY_CAP_S = 600.0
# An interrupted run requeues its job for free this many times in a row; one
# more and the job is blocked as a likely crash loop.
MAX_INTERRUPTIONS = 3


def retry_delay_s(failures: int, base_s: float = RETRY_BASE_S, cap_s: float = RETRY_CAP_S) -> float:
    """Seconds to wait before the retry that follows the ``failures``-th
    failed attempt: 2, 4, 8, … capped at ``cap_s``."""
    if failures < 1:
        return 0.0
    # Cap the exponent first so a huge count cannot overflow a float.
    return min(cap_s, base_s ** min(failures, 64))


# -- Hand-written statements ------------------------------------------------------
#
# The transitions below run once or more per job, so they skip peewee's query
# building (which cost several times what SQLite does) and run these constant
# statements through :func:`crewboard.board.db.execute`: each is prepared once
# per connection. They are written in the dialect SQLite and PostgreSQL share,
# with ``?`` placeholders; every guard a transition relies on is in its
# statement's WHERE clause, so a lost race changes nothing.

# The claimable head of each owner's queue, taken round-robin: the oldest
# ready job (whose time has come and that nobody asked to cancel) of the
# first owner after ``after_owner`` that has one, wrapping around. Disabled
# owners' jobs are never claimed. Each owner's head is found through the
# (owner, status, id) index, so the cost grows with the number of owners,
# not with the number of ready jobs. ``{cap}`` leaves out owners already
# running their share (CREWBOARD_USER_CONCURRENCY); ``{lock}`` on PostgreSQL
# makes supervisors racing for a head pass over each other's rows (the lock
# lasts the claim's short transaction).
_PICK_NEXT = """
SELECT owner_id, job_id FROM (
  SELECT u.id AS owner_id,
         (SELECT j.id FROM job j
           WHERE j.owner_id = u.id AND j.status = 'ready'
             AND j.available_at <= ? AND j.cancel_requested = FALSE
           ORDER BY j.id LIMIT 1{lock}) AS job_id
  FROM "user" u
  WHERE u.disabled = FALSE{cap}
) heads
WHERE job_id IS NOT NULL
ORDER BY owner_id <= ?, owner_id
LIMIT 1
"""
_UNDER_CAP = """
    AND (SELECT COUNT(*) FROM job r WHERE r.owner_id = u.id AND r.status = 'running') < ?"""
_SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
# On PostgreSQL, claims under a per-user cap take turns (a lock held to the
# commit): two at once would each count the owner's running jobs without the
# other's claim and together pass the cap. SQLite's writes take turns anyway.
_CAPPED_CLAIMS_TAKE_TURNS = "SELECT pg_advisory_xact_lock(hashtext('crewboard capped claims'))"

# ready → running, only if still ready: two supervisors racing for one job
# give it one run. Returns what the run needs to know.
_TAKE_JOB = """
UPDATE job SET status = 'running', updated_at = ?
WHERE id = ? AND status = 'ready'
RETURNING owner_id, agent, artifact_name, timeout_s, prompt, feedback
"""
# The run row, held by its supervisor's lease (board/leases.py); the unique
# index run_one_live_per_job refuses a second live run.
_INSERT_RUN = """
INSERT INTO run (job_id, attempt, outcome, supervisor_id, started_at, artifact, lease_expires_at)
VALUES (?, (SELECT COUNT(*) + 1 FROM run WHERE job_id = ?), 'running', ?, ?, ?, {lease})
RETURNING id, attempt
"""


@functools.cache
def _insert_run_sql(sqlite: bool) -> str:
    return _INSERT_RUN.format(lease=leases.claim_lease_sql(sqlite))


_SET_LOG_PATH = "UPDATE run SET log_path = ? WHERE id = ?"
# When a job became claimable (created, promoted, or its backoff ended), read
# before the claim moves updated_at on; and the request that created it.
_QUEUED_SINCE = "SELECT available_at, updated_at, request_id FROM job WHERE id = ?"
# A job's parents with their results, in the order they were created.
_PARENT_RESULTS = """
SELECT p.id, p.key, p.title, p.status, p.result
FROM job_edge e JOIN job p ON p.id = e.parent_id
WHERE e.child_id = ? ORDER BY p.id
"""
_COMMENTS = """
SELECT u.name, u.email, c.text
FROM comment c JOIN "user" u ON u.id = c.author_id
WHERE c.job_id = ? ORDER BY c.id
"""
# The pid of a runner that is up, only while its run is live.
_SET_PID = """
UPDATE run SET pid = ? WHERE id = ? AND outcome = 'running'
RETURNING job_id, (SELECT owner_id FROM job WHERE job.id = run.job_id)
"""
# A run with the fields of its job the failure policy reads.
_RUN_WITH_JOB = """
SELECT r.id, r.job_id, r.attempt, r.outcome, r.supervisor_id, r.started_at, r.log_path,
       r.artifact, j.owner_id, j.status, j.cancel_requested, j.interruptions, j.attempts,
       j.max_retries, j.crew_id
FROM run r JOIN job j ON j.id = r.job_id
WHERE r.id = ?
"""
# Close a run, only while it is live (and, for a recovery, still owned by
# the supervisor that was recovered: ``? IS NULL OR``).
_CLOSE_RUN = """
UPDATE run SET outcome = ?, exit_code = ?, error = ?, artifact = ?, ended_at = ?, duration_s = ?
WHERE id = ? AND outcome = 'running' AND (? IS NULL OR supervisor_id = ?)
"""
# A waiting job may become ready: its scheduled time has come and every
# parent is done (an archived parent that was done counts as done).
_PROMOTABLE = """
job.status = 'waiting' AND (job.scheduled_at IS NULL OR job.scheduled_at <= ?)
AND NOT EXISTS (
  SELECT 1 FROM job_edge e JOIN job p ON p.id = e.parent_id
  WHERE e.child_id = job.id AND p.status <> 'done'
    AND NOT (p.status = 'archived' AND COALESCE(p.status_before_archive, '') = 'done'))
"""
_ANY_PROMOTABLE = f"SELECT EXISTS (SELECT 1 FROM job WHERE {_PROMOTABLE})"
# waiting → ready for all that may, or for one done job's children.
_PROMOTE = (
    f"UPDATE job SET status = 'ready', updated_at = ? WHERE {_PROMOTABLE} RETURNING id, owner_id"
)
_PROMOTE_CHILDREN = f"""
UPDATE job SET status = 'ready', updated_at = ?
WHERE job.id IN (SELECT child_id FROM job_edge WHERE parent_id = ?) AND {_PROMOTABLE}
RETURNING id, owner_id
"""
# What the dispatcher plans its next round by: jobs claimable now (counted
# up to READY_COUNT_CAP, so a round costs the same with 100k jobs queued),
# and the next moment one becomes claimable (a backoff ending, a scheduled time).
READY_COUNT_CAP = 1000
_OUTLOOK = f"""
SELECT
  (SELECT COUNT(*) FROM (SELECT 1 FROM job
    WHERE status = 'ready' AND available_at <= ? AND cancel_requested = FALSE
    LIMIT {READY_COUNT_CAP}) claimable),
  (SELECT MIN(available_at) FROM job WHERE status = 'ready' AND available_at > ?),
  (SELECT MIN(scheduled_at) FROM job WHERE status = 'waiting' AND scheduled_at > ?)
"""
_RUNS_TO_CANCEL = """
SELECT r.id FROM run r JOIN job j ON j.id = r.job_id
WHERE r.outcome = 'running' AND r.supervisor_id = ? AND j.cancel_requested = TRUE
"""


def _ts(when: datetime | None) -> str | None:
    """A datetime as the board stores it (models.UTCDateTimeField)."""
    return Job.available_at.db_value(when)


def _from_ts(raw: object) -> datetime | None:
    return Job.available_at.python_value(raw)


def _record_events(rows: list[EventRow], now: datetime) -> list[int]:
    return record_events(rows, actor=SUPERVISOR, now=now)


def parent_results(job_id: int) -> list[ParentResult]:
    """Each parent of the job with its final result (None until it has one),
    in the order the parents were created."""
    return [ParentResult(*row) for row in execute(_PARENT_RESULTS, (job_id,))]


def _prompt_parts(job_id: int, prompt: str, feedback: str | None) -> PromptParts:
    """What a run of this job is told, read from the board: its prompt, its
    parents' results, the comments on it and its redo feedback."""
    return PromptParts(
        prompt=prompt,
        parents=tuple(parent_results(job_id)),
        comments=tuple(
            (name or email, text) for name, email, text in execute(_COMMENTS, (job_id,))
        ),
        feedback=feedback,
    )


def prompt_parts(job: Job) -> PromptParts:
    """:func:`_prompt_parts` for a job row."""
    return _prompt_parts(job.id, job.prompt, job.feedback)


# -- Claiming ------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A job a supervisor has just claimed, with what its launcher needs."""

    run_id: int
    job_id: int
    owner_id: int
    attempt: int
    agent: str
    artifact: str | None
    timeout_s: float
    log_path: Path
    prompt_parts: PromptParts  # read from the board with the claim
    # The request that created the job (None: a schedule did), for log lines.
    request_id: str | None = None
    # How long the job had been ready, waiting for a runner, when claimed.
    queued_s: float = 0.0

    @property
    def prompt(self) -> str:
        """The full prompt the runner is given, laid out from its parts."""
        return compose_prompt(self.prompt_parts)


@functools.cache
def _pick_next_sql(capped: bool, sqlite: bool) -> str:
    return _PICK_NEXT.format(cap=_UNDER_CAP if capped else "", lock="" if sqlite else _SKIP_LOCKED)


def _pick_next(
    after_owner: int, user_concurrency: int | None, now: datetime
) -> tuple[int, int] | None:
    capped = bool(user_concurrency)
    params: list[object] = [_ts(now)]
    if capped:
        params.append(user_concurrency)
    params.append(after_owner)
    return execute(_pick_next_sql(capped, is_sqlite()), params).fetchone()


def _claim(
    job_id: int,
    supervisor_id: str,
    log_path: Callable[[int], Path],
    now: datetime,
    lease_s: float,
) -> Claim | None:
    queued = execute(_QUEUED_SINCE, (job_id,)).fetchone()
    taken = execute(_TAKE_JOB, (_ts(now), job_id)).fetchone()
    if queued is None or taken is None:
        return None  # another supervisor got there first
    owner_id, agent, artifact, timeout_s, prompt, feedback = taken
    available_at, updated_at, request_id = queued
    ready_since = max(filter(None, (_from_ts(available_at), _from_ts(updated_at))), default=now)
    sqlite = is_sqlite()
    lease = leases.claim_lease_param(now, lease_s, sqlite)
    run_id, attempt = execute(
        _insert_run_sql(sqlite), (job_id, job_id, supervisor_id, _ts(now), artifact, lease)
    ).fetchone()
    path = log_path(run_id)
    execute(_SET_LOG_PATH, (str(path), run_id))
    data = {"runId": run_id, "attempt": attempt, "supervisorId": supervisor_id}
    message = f"run {run_id} (attempt {attempt}) dispatched"
    _record_events([(job_id, owner_id, EventKind.DISPATCHED, message, data)], now)
    return Claim(
        run_id=run_id,
        job_id=job_id,
        owner_id=owner_id,
        attempt=attempt,
        agent=agent,
        artifact=artifact,
        timeout_s=float(timeout_s),
        log_path=path,
        prompt_parts=_prompt_parts(job_id, prompt, feedback),
        request_id=request_id,
        queued_s=max(0.0, (now - ready_since).total_seconds()),
    )


@write
def claim_ready_jobs(
    supervisor_id: str,
    log_path: Callable[[int], Path],
    *,
    limit: int,
    after_owner: int = 0,
    user_concurrency: int | None = None,
    now: datetime,
    lease_s: float = leases.DEFAULT_LEASE_S,
) -> list[Claim]:
    """Claim up to ``limit`` ready jobs in one transaction, taking owners in
    turn (see ``_PICK_NEXT``): the first claim goes to the first owner after
    ``after_owner`` with a claimable job, the next to the owner after that,
    and so on; within an owner the oldest job goes first. With
    ``user_concurrency`` no owner gets more running jobs than that. Each job
    goes ``running`` with a new Run owned by ``supervisor_id``, its log at
    ``log_path(run_id)``, held for ``lease_s`` by the board's clock. Fewer
    claims (or none) when fewer are ready."""
    if user_concurrency and not is_sqlite():
        execute(_CAPPED_CLAIMS_TAKE_TURNS)
    claims: list[Claim] = []
    while len(claims) < limit:
        head = _pick_next(after_owner, user_concurrency, now)
        if head is None:
            break
        after_owner, job_id = head
        claim = _claim(job_id, supervisor_id, log_path, now, lease_s)
        if claim is None:
            break  # a racing supervisor took it; the next round looks again
        claims.append(claim)
    return claims


def claim_ready_job(
    supervisor_id: str,
    log_path: Callable[[int], Path],
    *,
    now: datetime,
    after_owner: int = 0,
    user_concurrency: int | None = None,
) -> Claim | None:
    """Claim one ready job (see :func:`claim_ready_jobs`); None when nothing
    is ready. Two supervisors racing for one job give it one run, never two."""
    claims = claim_ready_jobs(
        supervisor_id,
        log_path,
        limit=1,
        after_owner=after_owner,
        user_concurrency=user_concurrency,
        now=now,
    )
    return claims[0] if claims else None


@write
def set_run_pid(run_id: int, pid: int, *, now: datetime) -> bool:
    """Record the runner's pid once its process is up. False if the run is
    no longer live (a recovery closed it meanwhile)."""
    row = execute(_SET_PID, (pid, run_id)).fetchone()
    if row is None:
        return False
    job_id, owner_id = row
    message = f"run {run_id} started (pid {pid})"
    _record_events(
        [(job_id, owner_id, EventKind.RUN_STARTED, message, {"runId": run_id, "pid": pid})], now
    )
    return True


def run_with_job(run_id: int) -> Run | None:
    """The run with the fields of its job that the failure policy reads
    (``run.job``), in one query."""
    row = execute(_RUN_WITH_JOB, (run_id,)).fetchone()
    if row is None:
        return None
    (rid, job_id, attempt, outcome, supervisor_id, started_at, log_path, artifact,
     owner_id, status, cancel_requested, interruptions, attempts, max_retries,
     crew_id) = row  # fmt: skip
    job = Job(
        id=job_id,
        crew=crew_id,
        owner=owner_id,
        status=status,
        cancel_requested=bool(cancel_requested),
        interruptions=interruptions,
        attempts=attempts,
        max_retries=max_retries,
    )
    run = Run(
        id=rid,
        job=job,
        attempt=attempt,
        outcome=outcome,
        supervisor_id=supervisor_id,
        started_at=_from_ts(started_at),
        log_path=log_path,
        artifact=artifact,
    )
    return run


# -- Waiting → ready -------------------------------------------------------------


def _promote(*, now: datetime, parent: int | None = None) -> list[int]:
    """Make waiting jobs ready whose parents are all done and whose scheduled
    time has come (only ``parent``'s children, if given), with their events;
    returns their ids."""
    if parent is None:
        rows = execute(_PROMOTE, (_ts(now), _ts(now))).fetchall()
    else:
        rows = execute(_PROMOTE_CHILDREN, (_ts(now), parent, _ts(now))).fetchall()
    rows.sort()
    _record_events(
        [(job_id, owner_id, EventKind.READY, "ready to run", {}) for job_id, owner_id in rows], now
    )
    return [job_id for job_id, _ in rows]


@write
def _promote_in_transaction(*, now: datetime) -> list[int]:
    return _promote(now=now)


def promote_waiting(*, now: datetime) -> list[int]:
    """Waiting → ready for every job whose parents are all done and whose
    ``scheduled_at`` has come. Returns the ids promoted. Takes the write lock
    only when a read finds something to promote (it runs every dispatch round)."""
    if not execute(_ANY_PROMOTABLE, (_ts(now),)).fetchone()[0]:
        return []
    return _promote_in_transaction(now=now)


# -- Finishing -------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """What became of a run's job after :func:`finish_run`."""

    job_id: int
    job_status: str
    available_at: datetime | None = None
    promoted: tuple[int, ...] = field(default=())
    # Its settling queued webhook deliveries: the sender has work.
    webhooks_queued: bool = False


def _cancelled_by(job: Job) -> str:
    """Who asked to cancel the job, from the latest cancel event on it."""
    event = (
        Event.select(Event.actor)
        .where(
            (Event.job == job.id) & (Event.kind.startswith("cancel")) & (Event.actor != SUPERVISOR)
        )
        .order_by(Event.id.desc())
        .first()
    )
    if event is None:
        return "a user"
    if event.actor.startswith("user:") and event.actor[5:].isdigit():
        user = User.get_or_none(User.id == int(event.actor[5:]))
        if user is not None:
            return user.email
    return event.actor


def _close_run(
    run: Run,
    outcome: RunOutcome,
    *,
    exit_code: int | None,
    error: str | None,
    artifact: str | None,
    now: datetime,
    owner: str | None = None,
) -> bool:
    duration_s = max(0.0, (now - run.started_at).total_seconds())
    params = (str(outcome), exit_code, error, artifact, _ts(now), duration_s, run.id, owner, owner)
    return execute(_CLOSE_RUN, params).rowcount == 1


@dataclass(frozen=True)
class Settlement:
    """Where the failure policy sends a running job once its run has ended,
    and the event that says why."""

    status: JobStatus
    kind: EventKind
    message: str
    available_at: datetime | None = None
    # Counters and result the decision changes on the job row.
    changes: dict[str, object] = field(default_factory=dict)


def _succeeded(result: str | None) -> Settlement:
    return Settlement(JobStatus.DONE, EventKind.DONE, "done", changes={"result": result or ""})


def _blocked_by_agent(error: str | None) -> Settlement:
    reason = error or "no reason given"
    return Settlement(JobStatus.BLOCKED, EventKind.BLOCKED, f"blocked by the agent: {reason}")


def _cancelled(job: Job) -> Settlement:
    return Settlement(JobStatus.BLOCKED, EventKind.BLOCKED, f"cancelled by {_cancelled_by(job)}")


def _interrupted(job: Job, error: str | None, now: datetime) -> Settlement:
    """Back to the queue at once, no retry used, unless this interruption
    makes one too many in a row (a likely crash loop)."""
    interruptions = job.interruptions + 1
    why = error or "the supervisor stopped"
    changes: dict[str, object] = {"interruptions": interruptions}
    if interruptions > MAX_INTERRUPTIONS:
        message = f"interrupted {interruptions} times in a row (a likely crash loop): {why}"
        return Settlement(JobStatus.BLOCKED, EventKind.BLOCKED, message, changes=changes)
    message = f"interrupted ({why}); back in the queue"
    return Settlement(JobStatus.READY, EventKind.REQUEUED, message, now, changes)


def _failed(job: Job, outcome: RunOutcome, error: str | None, now: datetime) -> Settlement:
    """Retried after a backoff while retries are left, else blocked."""
    failures = job.attempts + 1
    what = f"{outcome.value.replace('_', ' ')}: {error or 'no reason given'}"
    changes: dict[str, object] = {"attempts": failures}
    if failures <= job.max_retries:
        delay_s = retry_delay_s(failures)
        message = f"{what}; retry {failures} of {job.max_retries} in {delay_s:g} s"
        available_at = now + timedelta(seconds=delay_s)
        return Settlement(JobStatus.READY, EventKind.RETRY, message, available_at, changes)
    tries = "no retries" if job.max_retries == 0 else f"{job.max_retries} retries"
    message = f"{what} (after {tries})"
    return Settlement(JobStatus.BLOCKED, EventKind.BLOCKED, message, changes=changes)


def settlement(
    job: Job, outcome: RunOutcome, *, error: str | None, result: str | None, now: datetime
) -> Settlement:
    """The failure policy: what becomes of a running job whose run ended
    with ``outcome``. A pending cancel request wins over whatever else
    stopped the run, success and the agent's own block aside."""
    if outcome == RunOutcome.SUCCEEDED:
        return _succeeded(result)
    if outcome == RunOutcome.BLOCKED:
        return _blocked_by_agent(error)
    if outcome == RunOutcome.CANCELLED or job.cancel_requested:
        return _cancelled(job)
    if outcome == RunOutcome.INTERRUPTED:
        return _interrupted(job, error, now)
    return _failed(job, outcome, error, now)


def _job_changes(outcome: RunOutcome, settled: Settlement, now: datetime) -> dict[str, object]:
    """The job row's new values: any cancel request is answered, and a run
    that was not interrupted ends a streak of interruptions."""
    values: dict[str, object] = {"updated_at": now, "cancel_requested": False}
    if outcome != RunOutcome.INTERRUPTED:
        values["interruptions"] = 0
    values.update(settled.changes)
    values["status"] = settled.status
    if settled.available_at is not None:
        values["available_at"] = settled.available_at
    if settled.status == JobStatus.BLOCKED:
        values["blocked_reason"] = settled.message
    elif settled.status == JobStatus.DONE:
        values["blocked_reason"] = None
    return values


@functools.cache
def _settle_sql(columns: tuple[str, ...]) -> str:
    """The guarded update that settles a running job, for these columns
    (the failure policy changes a different few per outcome)."""
    fields = Job._meta.fields
    assignments = ", ".join(f"{fields[name].column_name} = ?" for name in columns)
    return f"UPDATE job SET {assignments} WHERE id = ? AND status = 'running'"


def _settle_job(
    run: Run,
    outcome: RunOutcome,
    *,
    error: str | None,
    result: str | None,
    now: datetime,
) -> tuple[Finished, tuple[EventKind, str, dict[str, object]] | None]:
    """Move the run's job on by the failure policy; returns what became of
    it and the event that says why (None if the job was left be). A job that
    is done makes its waiting children ready in the same transaction."""
    job = run.job
    if job.status != JobStatus.RUNNING:
        # Someone moved it already (an operator's cleanup): leave it be.
        return Finished(job.id, job.status), None
    settled = settlement(job, outcome, error=error, result=result, now=now)
    values = _job_changes(outcome, settled, now)
    columns = tuple(sorted(values))
    fields = Job._meta.fields
    params = [fields[name].db_value(values[name]) for name in columns]
    execute(_settle_sql(columns), [*params, job.id])
    data: dict[str, object] = {"runId": run.id, "outcome": outcome.value}
    if settled.available_at is not None:
        data["availableAt"] = iso(settled.available_at)
    finished = Finished(job.id, settled.status, settled.available_at)
    return finished, (settled.kind, settled.message, data)


def close_run(
    run: Run,
    outcome: RunOutcome,
    *,
    exit_code: int | None,
    error: str | None,
    result: str | None,
    artifact: str | None,
    now: datetime,
    owner: str | None = None,
    how: str = "",
) -> Finished | None:
    """Close ``run`` (if still live, and still ``owner``'s when given) with
    ``outcome``, record it, and move its job on by the failure policy. Call
    inside a write transaction, with ``run`` from :func:`run_with_job`; None
    if the run was no longer live."""
    if not _close_run(
        run, outcome, exit_code=exit_code, error=error, artifact=artifact, now=now, owner=owner
    ):
        return None
    job = run.job
    duration_s = max(0.0, (now - run.started_at).total_seconds())
    ended = (
        job.id,
        job.owner_id,
        EventKind.RUN_ENDED,
        f"run {run.id} {outcome.value}{how}" + (f": {error}" if error else ""),
        {
            "runId": run.id,
            "outcome": outcome.value,
            "exitCode": exit_code,
            "durationS": round(duration_s, 3),
        },
    )
    finished, why = _settle_job(run, outcome, error=error, result=result, now=now)
    events: list[EventRow] = [ended]
    if why is not None:
        events.append((job.id, job.owner_id, *why))
    event_ids = _record_events(events, now)
    if why is None:
        return finished
    queued = webhooks.queue_finished(job, finished.job_status, event_ids[-1], now=now)
    promoted = _promote(now=now, parent=job.id) if finished.job_status == JobStatus.DONE else []
    return replace(finished, promoted=tuple(promoted), webhooks_queued=queued)


@write
def finish_run(
    run_id: int,
    outcome: RunOutcome,
    *,
    exit_code: int | None = None,
    error: str | None = None,
    result: str | None = None,
    artifact: str | None = None,
    now: datetime,
) -> Finished | None:
    """Close a live run with its outcome and move its job on (see :func:`settlement`):

    - ``succeeded`` → job ``done`` with ``result``; children whose parents are
      now all done become ``ready`` in the same transaction;
    - ``blocked`` → job ``blocked`` with the agent's reason (``error``);
    - ``cancelled`` → job ``blocked`` ("cancelled by …");
    - ``failed``/``crashed``/``timed_out`` → ``ready`` after a backoff while
      retries are left, else ``blocked`` with the reason;
    - ``interrupted`` → ``ready`` at once, no retry used, unless it is the
      fourth interruption in a row (then ``blocked``).

    A pending cancel request turns any unsuccessful end into a cancel. Returns
    None, changing nothing, if the run was no longer live."""
    run = run_with_job(run_id)
    if run is None or run.outcome != RunOutcome.RUNNING:
        return None
    return close_run(
        run,
        RunOutcome(outcome),
        exit_code=exit_code,
        error=error,
        result=result,
        artifact=artifact,
        now=now,
    )


# -- What the dispatcher looks at ------------------------------------------------


def runs_to_cancel(supervisor_id: str) -> list[int]:
    """Live runs of this supervisor whose job a user asked to cancel."""
    return [run_id for (run_id,) in execute(_RUNS_TO_CANCEL, (supervisor_id,))]


def runs_not_live(supervisor_id: str, run_ids: Iterable[int]) -> list[int]:
    """Of the runs this supervisor believes it is running, those the board no
    longer shows as its live runs (another supervisor's recovery closed them
    while this one was unresponsive): their runners must stop."""
    ids = list(run_ids)
    if not ids:
        return []
    live = {
        row.id
        for row in Run.select(Run.id).where(
            Run.id.in_(ids)
            & (Run.outcome == RunOutcome.RUNNING)
            & (Run.supervisor_id == supervisor_id)
        )
    }
    return [run_id for run_id in ids if run_id not in live]


@dataclass(frozen=True)
class Outlook:
    """What the board looks like to a dispatcher after its round."""

    ready: int = 0  # jobs claimable now, up to READY_COUNT_CAP
    next_due_at: datetime | None = None  # the next moment a job becomes claimable


def outlook(*, now: datetime) -> Outlook:
    """The jobs claimable now, and the earliest future moment a job becomes
    claimable (a retry's backoff ending, a scheduled time arriving), so the
    dispatcher wakes for it; one statement."""
    ready, next_ready, next_scheduled = execute(_OUTLOOK, (_ts(now),) * 3).fetchone()
    times = [when for raw in (next_ready, next_scheduled) if (when := _from_ts(raw)) is not None]
    return Outlook(int(ready), min(times) if times else None)


def next_due_at(*, now: datetime) -> datetime | None:
    """The earliest future moment a job becomes claimable (see :func:`outlook`)."""
    return outlook(now=now).next_due_at
