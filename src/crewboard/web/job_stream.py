"""``GET /api/jobs/{id}/stream``: a job's latest run, live, as SSE frames.

The run's prompt comes as ``user_message``, each step as a ``chunk``, the end
as ``final_result`` or ``error`` (a ``blocked`` record is a ``chunk``), then
``done {"runId", "outcome"}`` once the supervisor has finished the run. A job
without a run yet is waited for. Frame ids are ``<runId>:<seq>``, so a client
resuming after a retry learns how the run it followed ended and then gets the
new run from its start. The log itself is read by the shared
:class:`~crewboard.web.loghub.LogHub`; what streams ask of the board (the
latest run of a job, a run's outcome) is answered by one :class:`BoardWatch`
query per question and board commit, however many streams ask, and a stream
waiting on one wakes at the commit that changes it. A client going
away ends only its own stream, never the job.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import trio

from crewboard.board import db, job_views
from crewboard.board.models import RunOutcome
from crewboard.home import Home
from crewboard.sessionlog import Record, is_terminal
from crewboard.web.board_changes import WATCHED_POLL_S, BoardChanges
from crewboard.web.loghub import LogHub
from crewboard.web.render import render_markdown
from crewboard.web.sse import PING, LazyFrame, Pinger, encode_frame, frame_bytes, parse_id

# Where board commits cannot be seen, streams waiting on the board poll this often.
WAIT_POLL_S = 0.25
# How long a stream waits on a quiet log before it looks at the run's row (or
# pings). Every idle stream wakes this often, so it is not short.
IDLE_S = 5.0
# A run the supervisor has finished whose log still has no terminal record
# (its launcher appends one after reaping) is given this long to get one.
LOG_GRACE_S = 2.0

GONE = "gone"
_FRAME_KINDS = {"user_message": "user_message", "final_result": "final_result", "error": "error"}


def job_frame(record: Record, run_id: int | None = None) -> bytes:
    """A log record as the job stream sends it, with ``<runId>:<seq>`` as its
    id (its seq alone without ``run_id``); a final result or a block reason
    also as sanitised ``html``, as in chat."""
    kind = _FRAME_KINDS.get(str(record.get("type")), "chunk")
    if kind == "final_result":
        record = {**record, "html": render_markdown(str(record.get("text") or ""))}
    elif record.get("type") == "blocked":
        record = {**record, "html": render_markdown(str(record.get("reason") or ""))}
    seq = int(record.get("seq", 0))
    return encode_frame(kind, record, seq if run_id is None else f"{run_id}:{seq}")


@dataclass(frozen=True)
class RunFrames:
    """The frame encoder of one run's records. Equal for equal runs, so the
    hub's per-encoder memo is shared by every stream of the run; each frame
    is a :class:`~crewboard.web.sse.LazyFrame`, encoded when first sent (off
    the event loop when it is large)."""

    run_id: int

    def __call__(self, record: Record) -> LazyFrame:
        return LazyFrame(self._encode, record)

    def _encode(self, record: Record) -> bytes:
        return job_frame(record, self.run_id)


def parse_resume(raw: str | None) -> tuple[int | None, int]:
    """A ``Last-Event-ID`` as ``(run_id, seq)``: ``<runId>:<seq>`` names
    both; a plain ``<seq>`` (from clients of the per-run ids) is a seq of the
    current run, ``(None, seq)``; anything else is ``(None, 0)``, the start."""
    if raw is None:
        return None, 0
    run, colon, seq = raw.partition(":")
    if not colon:
        return None, parse_id(raw) or 0
    run_id, after = parse_id(run), parse_id(seq)
    if run_id is None or after is None:
        return None, 0
    return run_id, after


@dataclass
class _Entry:
    at: float
    # Set at the board's first commit after the answer was read (None where
    # commits cannot be seen: the answer then keeps for ``max_age_s``).
    committed: trio.Event | None
    value: Any


@dataclass
class BoardWatch:
    """Board answers shared by every stream, kept until the board's next
    commit, with concurrent askers of one question waiting on one query. A
    stream waiting for an answer to change arms first, asks, then waits::

        committed = watch.arm()
        outcome = await watch.run_outcome(run_id)
        ...
        await watch.wait(committed)
    """

    changes: BoardChanges | None = None
    max_age_s: float = WAIT_POLL_S
    _cache: dict[tuple[str, int], _Entry] = field(default_factory=dict)
    _asking: dict[tuple[str, int], trio.Event] = field(default_factory=dict)

    def arm(self) -> trio.Event | None:
        """An event set at the board's next commit (None: poll)."""
        return None if self.changes is None else self.changes.arm()

    async def wait(self, committed: trio.Event | None) -> None:
        """Until the commit ``committed`` waits for, or one poll interval."""
        if self.changes is None:
            await trio.sleep(self.max_age_s)
        else:
            await self.changes.wait(committed, self.max_age_s)

    async def latest_run(self, job_id: int) -> tuple[int, str] | str | None:
        """``(run_id, outcome)`` of the job's newest run, None while it has
        none, or :data:`GONE` once the job is deleted."""
        return await self._get(("job", job_id), lambda: db.call(_latest_run_of, job_id))

    async def run_outcome(self, run_id: int) -> str | None:
        """The run's outcome, or None once it is deleted."""
        return await self._get(("run", run_id), lambda: db.call(job_views.run_outcome, run_id))

    def _fresh(self, entry: _Entry) -> bool:
        age = trio.current_time() - entry.at
        if entry.committed is None:
            return age < self.max_age_s
        return not entry.committed.is_set() and age < WATCHED_POLL_S

    async def _get(self, key: tuple[str, int], fetch: Callable[[], Awaitable[Any]]) -> Any:
        while True:
            entry = self._cache.get(key)
            if entry is not None and self._fresh(entry):
                return entry.value
            asking = self._asking.get(key)
            if asking is None:
                break
            await asking.wait()
            if key not in self._cache:
                break  # the query failed; ask again ourselves
        self._asking[key] = asking = trio.Event()
        try:
            committed = self.arm()
            value = await fetch()
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = _Entry(trio.current_time(), committed, value)
            return value
        finally:
            del self._asking[key]
            asking.set()


def _latest_run_of(job_id: int) -> tuple[int, str] | str | None:
    run = job_views.latest_run(job_id)
    if run is not None:
        return run.id, run.outcome
    return None if job_views.job_exists(job_id) else GONE


async def stream_job(
    job_id: int, resume_from: str | None, *, home: Home, hub: LogHub, watch: BoardWatch
) -> AsyncIterator[bytes]:
    """The frames of the job's latest run, then ``done``; resumed from
    ``resume_from`` (a ``Last-Event-ID``). An id of an older run of the job
    first ends that run (its frames after the id, then its ``done``), then
    sends the latest run from its start. Everything it needs is passed in:
    it runs after the request has ended."""
    pinger = Pinger()
    while True:
        committed = watch.arm()
        latest = await watch.latest_run(job_id)
        if latest == GONE:
            return
        if isinstance(latest, tuple):
            run_id = latest[0]
            break
        if pinger.due():
            yield PING
        await watch.wait(committed)

    resume_run, after_seq = parse_resume(resume_from)
    if resume_run is not None and resume_run != run_id:
        older = resume_run < run_id and await db.call(job_views.run_belongs_to, resume_run, job_id)
        if older:
            ending = _run_frames(resume_run, after_seq, home, hub, watch, pinger)
            async with aclosing(ending):
                async for chunk in ending:
                    yield chunk
        after_seq = 0
    async with aclosing(_run_frames(run_id, after_seq, home, hub, watch, pinger)) as frames:
        async for chunk in frames:
            yield chunk


async def _run_frames(
    run_id: int, after_seq: int, home: Home, hub: LogHub, watch: BoardWatch, pinger: Pinger
) -> AsyncGenerator[bytes, None]:
    """One run's frames after ``after_seq``, then its ``done`` once the
    supervisor has finished it; nothing more if the run is deleted."""
    path = home.run_log(run_id)
    last = await hub.last_record(path)
    if not (last is not None and is_terminal(last) and int(last.get("seq", 0)) <= after_seq):
        finished_at: float | None = None
        idle_s = min(IDLE_S, pinger.every_s)
        batches = hub.follow_batches(path, after_seq, encode=RunFrames(run_id), idle_s=idle_s)
        async with aclosing(batches):
            async for batch in batches:
                if batch is not None:
                    pinger.sent()
                    yield await frame_bytes(batch)
                    continue
                if pinger.due():
                    yield PING
                outcome = await watch.run_outcome(run_id)
                if outcome is None:
                    return
                if outcome != RunOutcome.RUNNING:
                    if finished_at is None:
                        finished_at = trio.current_time()
                        batches.idle_s = min(idle_s, LOG_GRACE_S / 4)
                    elif trio.current_time() - finished_at >= LOG_GRACE_S:
                        break

    while True:
        committed = watch.arm()
        outcome = await watch.run_outcome(run_id)
        if outcome is None:
            return
        if outcome != RunOutcome.RUNNING:
            break
        if pinger.due():
            yield PING
        await watch.wait(committed)
    yield encode_frame("done", {"runId": run_id, "outcome": outcome})
