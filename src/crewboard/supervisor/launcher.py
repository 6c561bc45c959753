"""The launcher: one runner process per claimed run, from spawn to reap.

For each run it builds the runner's spec (:class:`crewboard.runspec.RunnerSpec`:
the agent's presets, the resolved model, the composed prompt, the run's
workspace, log and artifact folder) and runs it through
:func:`crewboard.processes.run_runner`: a runner in its own process group,
forked from the supervisor's pre-imported template
(:mod:`crewboard.forkserver`) when it runs, its pid recorded, the process
awaited (so a runner killed with ``kill -9`` is seen the moment it dies, not
at a poll). A run is stopped — SIGTERM to its group, the grace period,
SIGKILL — when its job's timeout passes (``timed_out``), a user cancels it
(``cancelled``) or the supervisor drains (``interrupted``). After the reap the
log is closed with a terminal record if the runner left none, and
:func:`crewboard.board.dispatch.finish_run` applies the failure policy. On
PostgreSQL the run's records are shipped into the board as they are written
(:class:`crewboard.board.records.Shipper`), the rest of them, up to the
terminal record, before the end is recorded.

Each run is held by a lease (``board/leases.py``) the heartbeat renews
(``supervisor/heartbeat.py``). After each renewal the launcher tells the
runner of every run still held, with an empty line on its stdin — the runner stops
itself when none comes (``runner/lease.py``) — and stops the runners of runs
no longer held (:meth:`Launcher.hold`). When renewals fail for half a lease the
launcher is fenced (:meth:`Launcher.fence`): every runner is stopped and no
slot is free until a renewal succeeds.

Recording a run's end is retried while the board's errors are transient
(:func:`crewboard.board.db.is_transient_error`: a full disk, an I/O error, a
lost connection), with a capped exponential backoff, until it succeeds or
the supervisor stops; meanwhile the run stays in :attr:`Launcher.active`, so
the reaper leaves it be. A run given up on (a stop, or an error that will not
pass) stays ``running`` on the board for the reaper or the next start's
recovery to close.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import trio

from crewboard import logs, metrics, sessionlog
from crewboard.agents import Preset, run_agents
from crewboard.board import db
from crewboard.board.artifacts import store_run_artifacts
from crewboard.board.dispatch import Claim, Finished, finish_run, set_run_pid
from crewboard.board.models import RunOutcome
from crewboard.board.records import Shipper
from crewboard.board.records import enabled as records_shipped
from crewboard.catalog import Catalog
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.errors import CrewboardError
from crewboard.forkserver import ForkServer
from crewboard.home import Home
from crewboard.mcpspec import McpError, run_servers
from crewboard.processes import (
    RunnerExit,
    RunnerProcess,
    describe_exit,
    run_runner,
    tell_lease_renewed,
    tell_shipped,
)
from crewboard.providers import DEFAULT_MODEL, resolve_model
from crewboard.runspec import (
    LEASE_LAPSED_EXIT,
    Lease,
    ModelDef,
    RunnerSpec,
    SpecError,
    agents_from_json,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# The runner's exit codes for its own error record, and for a spec it refused.
_RUNNER_ERROR_EXITS = frozenset({1, 2})
# The backoff between attempts to record a run's end: doubling from the
# first, capped (a full disk may take an operator minutes to clear).
RECORD_RETRY_FIRST_S = 0.25
RECORD_RETRY_CAP_S = 15.0


# A claimed run ready to start (its spec), or why it cannot start.
Prepared = RunnerSpec | CrewboardError | SpecError | OSError
# On a worker thread: claim a job for the slot a run's end frees, with its
# runner's spec; None when nothing is ready (the dispatcher's, while it serves).
Refill = Callable[[], tuple[Claim, Prepared] | None]


@dataclass(frozen=True)
class Ending:
    """How a run ended, as the board records it."""

    outcome: RunOutcome
    error: str | None = None
    result: str | None = None


def classify(
    last: sessionlog.Record | None,
    returncode: int,
    stopped_as: RunOutcome | None,
    timeout_s: float,
) -> Ending:
    """Decide a reaped run's outcome from its log's last record, its exit code
    and why the supervisor stopped it (None if it was not stopped)."""
    kind = last.get("type") if last else None
    if kind == "final_result":
        # Whatever happened after, the run produced its answer.
        assert last is not None
        return Ending(RunOutcome.SUCCEEDED, result=str(last.get("text") or ""))
    if stopped_as == RunOutcome.TIMED_OUT:
        return Ending(stopped_as, f"timed out after {timeout_s:g} s")
    if stopped_as == RunOutcome.CANCELLED:
        return Ending(stopped_as, "cancelled")
    if stopped_as == RunOutcome.INTERRUPTED:
        return Ending(stopped_as, "the supervisor stopped it")
    if stopped_as is not None:
        return Ending(stopped_as, "stopped by the supervisor")
    if kind == "error" and returncode == LEASE_LAPSED_EXIT:
        return Ending(RunOutcome.INTERRUPTED, "its lease lapsed")
    if kind == "blocked":
        assert last is not None
        return Ending(RunOutcome.BLOCKED, str(last.get("reason") or "") or None)
    if kind == "error" and returncode in _RUNNER_ERROR_EXITS:
        assert last is not None
        return Ending(RunOutcome.FAILED, str(last.get("message") or "the run failed"))
    how = f"the runner {describe_exit(returncode)}"
    if kind == "error" and last is not None and last.get("message"):
        how += f" ({last['message']})"
    else:
        how += " without a result"
    return Ending(RunOutcome.CRASHED, how)


def build_spec(claim: Claim, config: Config, home: Home, presets: dict[str, Preset]) -> RunnerSpec:
    """The runner's spec for a claimed run. CrewboardError (the operator's or
    the template's to fix) if the agent or its model cannot be used."""
    if claim.agent not in presets:
        raise CrewboardError(f"no agent preset {claim.agent!r} is loaded")
    preset = presets[claim.agent]
    model = resolve_model(preset.model or DEFAULT_MODEL, config)
    agents = run_agents(presets, claim.agent)
    try:
        mcp = run_servers(config.mcp, agents)
    except McpError as exc:
        raise CrewboardError(str(exc)) from exc
    return RunnerSpec(
        run_id=str(claim.run_id),
        kind="job",
        agent_id=claim.agent,
        agents=agents_from_json(agents),
        mcp=mcp,
        model=ModelDef.from_json(model),
        prompt=claim.prompt,
        workspace=home.workspace(claim.run_id),
        log_path=claim.log_path,
        artifact_dir=home.artifact_dir(claim.run_id),
        artifact=claim.artifact,
        limits=config.runner_limits(),
        request_id=claim.request_id,
        lease=Lease(seconds=config.run_lease_s),
        ship_ack=records_shipped(),
    )


def _prepare(spec: RunnerSpec) -> None:
    # The run's workspace and artifact folder are made by the runner's tools
    # when first used: most runs need neither, and a folder made for each
    # run costs the disk more than a short run costs itself.
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class Recorded:
    """What recording a run's end did."""

    ending: Ending
    last: sessionlog.Record | None  # the runner's own last record
    finished: Finished | None  # what became of the job (None: the run was no longer live)
    successor: tuple[Claim, Prepared] | None = None  # the job claimed for the freed slot


def _record_end(
    claim: Claim,
    home: Home,
    runner_exit: RunnerExit,
    stopped_as: RunOutcome | None,
    max_artifact_bytes: int,
    shipper: Shipper | None = None,
    refill: Refill | None = None,
) -> Recorded:
    """After the reap, on a worker thread: classify the run's end from its
    log, close the log, ship the rest of its records to the board (on
    PostgreSQL: the terminal record is there before the run is closed), keep
    its saved files in the board (every web node serves them) and apply the
    failure policy on the board; then, with ``refill``, claim the next job for
    the slot it frees."""
    returncode = runner_exit.returncode
    last = sessionlog.last_record(claim.log_path)
    ending = classify(last, returncode, stopped_as, claim.timeout_s)
    artifact = _close_log(claim, home, ending, last, runner_exit.stderr)
    if shipper is not None:
        shipper.ship_rest()
    store_run_artifacts(
        claim.run_id, home.artifact_dir(claim.run_id), max_bytes=max_artifact_bytes, now=utcnow()
    )
    finished = finish_run(
        claim.run_id,
        ending.outcome,
        exit_code=returncode,
        error=ending.error,
        result=ending.result,
        artifact=artifact,
        now=utcnow(),
    )
    successor = None
    if refill is not None:
        try:
            successor = refill()
        except Exception:
            # The run's end is recorded; the dispatcher fills the slot instead.
            log.exception("could not claim a job for the slot run %s freed", claim.run_id)
    return Recorded(ending, last, finished, successor)


def _saved_artifact(claim: Claim, home: Home, last: sessionlog.Record | None) -> str | None:
    folder = home.artifact_dir(claim.run_id)
    if claim.artifact and (folder / claim.artifact).is_file():
        return claim.artifact
    saved = last.get("artifacts") if last else None
    if isinstance(saved, list) and saved and isinstance(saved[0], str):
        return saved[0]
    return None


def _close_log(
    claim: Claim, home: Home, ending: Ending, last: sessionlog.Record | None, stderr: bytes
) -> str | None:
    """After the reap: end the log with a terminal record if the runner left
    none, keep what the runner wrote to its stderr beside the log (if it
    wrote anything), and name the artifact the run saved. ``last`` is the
    log's last record as read before (not read again unless a terminal
    record was added)."""
    if ending.outcome != RunOutcome.SUCCEEDED:
        written = sessionlog.ensure_terminal(claim.log_path, ending.error or ending.outcome.value)
        if written is not None:
            last = written
    if stderr:
        try:
            home.run_stderr(claim.run_id).write_bytes(stderr)
        except OSError as exc:
            log.warning("could not keep the stderr of run %s: %s", claim.run_id, exc)
    return _saved_artifact(claim, home, last)


@dataclass
class ActiveRun:
    claim: Claim
    scope: trio.CancelScope
    stopped_as: RunOutcome | None = None
    pid: int | None = None
    process: RunnerProcess | None = None  # once started
    # The provider its model is served by, once its spec is built (metrics).
    provider: str | None = None
    started_at: float = field(default_factory=trio.current_time)
    # The runner has exited and its end is being recorded: the board may show
    # the run closed before the launcher lets go of it.
    ending: bool = False
    prepared: Prepared | None = None  # the spec, if the dispatcher prepared it
    # Ships the run's records to a PostgreSQL board as they are written.
    shipper: Shipper | None = None


class Launcher:
    """Runs claimed jobs, each in its own task of the launcher's nursery."""

    def __init__(
        self,
        config: Config,
        home: Home,
        nursery: trio.Nursery,
        on_finished: Callable[[], None],
        forkserver: ForkServer | None = None,
        on_webhooks_queued: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.home = home
        self.forkserver = forkserver
        self.catalog = Catalog(config)
        self._nursery = nursery
        self._on_finished = on_finished
        # Set while the dispatcher serves: a run's end claims the next job for
        # its slot in the same trip to the board, and the slot is never free.
        self.refill: Refill | None = None
        # Told only when a run's end queued webhook deliveries, so the sender
        # does not look at the board after every run.
        self._on_webhooks_queued = on_webhooks_queued
        self.active: dict[int, ActiveRun] = {}
        self._idle = trio.Event()
        self._idle.set()
        # Set once the supervisor stops: runs whose end cannot be recorded are
        # then left for the next start's recovery instead of retried.
        self._give_up = trio.Event()
        # Its leases may have lapsed: no runner runs and nothing is claimed.
        self.fenced = False

    @property
    def running(self) -> int:
        return len(self.active)

    @property
    def free_slots(self) -> int:
        if self.fenced:
            return 0
        return max(0, self.config.concurrency - len(self.active))

    def hold(self, held: set[int], asked: set[int]) -> None:
        """After a lease renewal that succeeded: ``held`` are the runs it
        renewed, ``asked`` the runs running when it was sent. Lift the
        fence, keep each held runner going (tell it of the renewal), and
        stop those asked about that are no longer held (a peer rescued the
        run)."""
        if self.fenced:
            log.info("the run leases are renewed again; taking work")
            self.fenced = False
        for run_id in asked - held:
            if self.stop(run_id, RunOutcome.INTERRUPTED):
                log.warning("run %s is no longer held by this supervisor; stopping it", run_id)
        for run_id in held & self.supervised():
            process = self.active[run_id].process
            if process is not None:
                tell_lease_renewed(process)

    def fence(self) -> None:
        """The leases could not be renewed in time and may lapse: stop every
        runner (its run ends ``interrupted``) and claim nothing until
        :meth:`hold` says a renewal has succeeded."""
        if not self.fenced:
            log.error(
                "could not renew the run leases in time; stopping %d run(s), taking no work",
                len(self.supervised()),
            )
            self.fenced = True
        for run_id in self.supervised():
            self.stop(run_id, RunOutcome.INTERRUPTED)

    async def launch(self, claim: Claim, prepared: Prepared | None = None) -> None:
        """Start the claimed run's runner (from ``prepared``, :meth:`prepare`'s
        answer, if given); returns once it is spawned (or once the run has
        been closed as failed, if it could not be)."""
        await self._nursery.start(self._run, self._take_slot(claim, prepared))

    def _take_slot(self, claim: Claim, prepared: Prepared | None) -> ActiveRun:
        """The claimed run, counted in :attr:`active` from now on."""
        deadline = trio.current_time() + claim.timeout_s if claim.timeout_s > 0 else math.inf
        active = ActiveRun(claim, trio.CancelScope(deadline=deadline), prepared=prepared)
        self.active[claim.run_id] = active
        self._idle = trio.Event()
        return active

    def stop(self, run_id: int, outcome: RunOutcome) -> bool:
        """Stop a run's runner (SIGTERM, grace, SIGKILL); its run ends with
        ``outcome``. False if this launcher has no such run, or its runner
        has exited already."""
        active = self.active.get(run_id)
        if active is None or active.ending:
            return False
        if active.stopped_as is None:
            active.stopped_as = outcome
            log.info("stopping run %s of job %s (%s)", run_id, active.claim.job_id, outcome)
        active.scope.cancel()
        return True

    def supervised(self) -> set[int]:
        """The runs whose runner is running under this launcher (not those
        that have exited and are only being recorded)."""
        return {run_id for run_id, active in self.active.items() if not active.ending}

    def give_up_recording(self) -> None:
        """Stop retrying to record runs' ends (the supervisor is stopping):
        they stay ``running`` on the board for the next start's recovery."""
        self._give_up.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def drain(self, drain_s: float, hurry: trio.Event | None = None) -> None:
        """Give running runs ``drain_s`` (or until ``hurry`` is set) to
        finish, then stop the rest; their runs end ``interrupted`` and their
        jobs go back to ready."""
        if self.active:
            log.info("draining %d run(s) for up to %g s", len(self.active), drain_s)
        with trio.move_on_after(drain_s) as window:
            async with trio.open_nursery() as nursery:
                if hurry is not None:
                    nursery.start_soon(_cancel_when, hurry, window)
                await self.wait_idle()
                nursery.cancel_scope.cancel()
        # Past the window: runs still waiting to record their end give up,
        # the others are stopped (and try once to record theirs).
        self.give_up_recording()
        for run_id in list(self.active):
            self.stop(run_id, RunOutcome.INTERRUPTED)
        await self.wait_idle()

    async def _run(
        self,
        active: ActiveRun,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        claim = active.claim
        try:
            # Every line about this run says which run, job and request it is.
            with logs.bind(requestId=claim.request_id, runId=claim.run_id, jobId=claim.job_id):
                await self._supervise(active, task_status)
        finally:
            if active.shipper is not None:
                active.shipper.stop()
            del self.active[claim.run_id]
            if not self.active:
                self._idle.set()
            if self.free_slots:
                self._on_finished()

    async def _supervise(self, active: ActiveRun, task_status: trio.TaskStatus[None]) -> None:
        claim = active.claim
        prepared = active.prepared
        if prepared is None:
            prepared = await trio.to_thread.run_sync(self.prepare, claim)
        try:
            if isinstance(prepared, Exception):
                raise prepared
            active.provider = prepared.model.provider
            await run_runner(
                prepared,
                active.scope,
                grace_s=self.config.grace_s,
                started=partial(self._started, active, task_status),
                ended=partial(self._finish, active),
                template=self.forkserver,
            )
        except (CrewboardError, SpecError, OSError) as exc:
            # Only before the runner started: the hooks handle their own errors.
            task_status.started()
            await self._finish_unlaunched(claim, exc)

    def prepare(self, claim: Claim) -> Prepared:
        """On a worker thread: the run's spec from the current presets, with
        its folders made; or why the run cannot start. The dispatcher calls
        it in the same trip to a worker thread as the claim, so a job's start
        waits for no other."""
        try:
            spec = build_spec(claim, self.config, self.home, self.catalog.load().presets)
            _prepare(spec)
        except (CrewboardError, SpecError, OSError) as exc:
            return exc
        return spec

    async def _started(
        self, active: ActiveRun, task_status: trio.TaskStatus[None], proc: RunnerProcess
    ) -> None:
        active.pid = proc.pid
        active.process = proc
        active.shipper = Shipper.for_run(
            active.claim.run_id, active.claim.log_path, acknowledge=partial(tell_shipped, proc)
        )
        if active.shipper is not None:
            self._nursery.start_soon(active.shipper.serve_shipping)
        task_status.started()
        try:
            await db.call(set_run_pid, active.claim.run_id, proc.pid, now=utcnow())
        except Exception:
            # Only the pid and its event are lost; the run goes on.
            log.exception("could not record the pid of run %s", active.claim.run_id)

    async def _finish(self, active: ActiveRun, runner_exit: RunnerExit) -> None:
        active.ending = True
        claim = active.claim
        code = runner_exit.returncode
        stopped_as = active.stopped_as
        if runner_exit.stopped and stopped_as is None:
            # The timeout passed, or the supervisor itself is being torn down.
            cancelled_caught = active.scope.cancelled_caught
            stopped_as = RunOutcome.TIMED_OUT if cancelled_caught else RunOutcome.INTERRUPTED

        async def record() -> Recorded:
            # One trip to a worker thread: read the log's end, close the log,
            # record the run's end on the board and claim the slot's next job.
            recorded = await db.call(
                _record_end,
                claim,
                self.home,
                runner_exit,
                stopped_as,
                self.config.artifact_max_bytes,
                active.shipper,
                None if self.fenced else self.refill,
            )
            self._webhooks_queued(recorded.finished)
            return recorded

        recorded = await self._record_retrying(claim, "the end", record)
        if recorded is None:
            return
        if recorded.successor is not None:
            # Counted before this run lets go of its slot: no round sees it free.
            self._nursery.start_soon(self._run, self._take_slot(*recorded.successor))
        ending, last = recorded.ending, recorded.last
        duration_s = trio.current_time() - active.started_at
        metrics.run_finished(ending.outcome.value, duration_s, claim.queued_s)
        if active.provider is not None:
            metrics.provider_usage(active.provider, "job", last)
        log.info(
            "run %s of job %s: %s (%s, %.2f s)%s",
            claim.run_id,
            claim.job_id,
            ending.outcome.value,
            describe_exit(code),
            duration_s,
            f": {ending.error}" if ending.error else "",
        )

    async def _finish_unlaunched(self, claim: Claim, exc: Exception) -> None:
        message = f"could not start the run: {exc}"
        log.warning("run %s of job %s: %s", claim.run_id, claim.job_id, message)

        async def record() -> bool:
            await trio.to_thread.run_sync(sessionlog.ensure_terminal, claim.log_path, message)
            shipper = Shipper.for_run(claim.run_id, claim.log_path)
            if shipper is not None:
                await db.call(shipper.ship_rest)
            finished = await db.call(
                finish_run, claim.run_id, RunOutcome.FAILED, error=message, now=utcnow()
            )
            self._webhooks_queued(finished)
            return True

        with trio.CancelScope(shield=True):
            if await self._record_retrying(claim, "the failed start", record):
                metrics.run_finished(RunOutcome.FAILED.value, 0.0, claim.queued_s)

    def _webhooks_queued(self, finished: Finished | None) -> None:
        if finished is not None and finished.webhooks_queued and self._on_webhooks_queued:
            self._on_webhooks_queued()

    async def _record_retrying(
        self, claim: Claim, what: str, record: Callable[[], Awaitable[T]]
    ) -> T | None:
        """``record()``, tried again after a growing pause while it fails
        with a transient error, until it succeeds or the launcher gives up
        (None then, the run left ``running`` on the board). Runs shielded
        (from the runner's reap), so only :meth:`give_up_recording` ends it."""
        delay_s = RECORD_RETRY_FIRST_S
        failures = 0
        while True:
            try:
                return await record()
            except Exception as exc:
                failures += 1
                if not db.is_transient_error(exc):
                    log.exception("could not record %s of run %s", what, claim.run_id)
                    return None
                if self._give_up.is_set():
                    log.warning(
                        "could not record %s of run %s (%s); left for recovery at the next start",
                        what,
                        claim.run_id,
                        exc,
                    )
                    return None
                # A full disk fails every few seconds for minutes: say so at
                # the 1st, 2nd, 4th, 8th… failure, not at each.
                if failures & (failures - 1) == 0:
                    log.warning(
                        "could not record %s of run %s (%s); retrying (failure %d, next in %g s)",
                        what,
                        claim.run_id,
                        exc,
                        failures,
                        delay_s,
                    )
            with trio.move_on_after(delay_s):
                await self._give_up.wait()
            delay_s = min(RECORD_RETRY_CAP_S, delay_s * 2)


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


@contextlib.asynccontextmanager
async def open_launcher(
    config: Config,
    home: Home,
    on_finished: Callable[[], None],
    forkserver: ForkServer | None = None,
    on_webhooks_queued: Callable[[], None] | None = None,
) -> AsyncIterator[Launcher]:
    """A launcher whose runs live in this block. Leaving it waits for them;
    cancelling it stops them and closes their runs ``interrupted``.
    ``on_finished`` is called after a run whose end leaves a slot free (one
    not refilled in the same trip), ``on_webhooks_queued`` after
    a run whose end queued webhook deliveries."""
    async with trio.open_nursery() as nursery:
        launcher = Launcher(config, home, nursery, on_finished, forkserver, on_webhooks_queued)
        try:
            yield launcher
        finally:
            # Torn down without a drain (cancelled, or failing): recording a
            # run's end is shielded, so it must be told to stop retrying.
            launcher.give_up_recording()
            launcher.catalog.close()
