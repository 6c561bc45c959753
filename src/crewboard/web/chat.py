"""Chat turns: the web process runs each turn of a chat session in a runner
subprocess of its own, and owns those runners from start to reap.

A turn is one user message and the agent's answer to it. :class:`ChatTurns`
runs the turn's runner (kind ``chat``, with the session's earlier turns as
context) through :func:`crewboard.processes.run_runner`, as the supervisor
runs a job's, forked from the web process's own runner template
(:mod:`crewboard.forkserver`) when it runs. Turns live in the nursery of
:func:`serve_chat_turns`, so a turn carries on when the client that asked
for it goes away. After reaping the runner it makes sure the turn ends with
a terminal record in the session's log, whatever killed the runner, so every
follower of the log ends too. One turn at a time per session; a session
being deleted takes no new turn. The per-user limits of
:mod:`crewboard.limits` apply here: at most ``chat_turns_per_user`` turns of
one user at once (429 past it), and a turn still running after
``chat_turn_timeout_s`` is killed and ends with an ``error`` that says so.
On shutdown every running turn is stopped (SIGTERM, grace, SIGKILL) and
recorded as stopped, then the template.

On PostgreSQL a turn's records are shipped into the board as they are
written (:class:`crewboard.board.records.Shipper`, the turn's terminal record
before the turn is freed), and a turn first takes into its local log the
session's records that other web nodes wrote, so any node may run a
session's next turn.

Streams read a turn's records through :mod:`crewboard.web.loghub`;
a turn's ``after_seq`` and ``finished`` tell them where it starts and when
it is over.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from crewboard import limits, logs, metrics
from crewboard.agents import Preset, run_agents
from crewboard.board import chats, db, records
from crewboard.board.models import ChatSession
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.errors import Conflict, ValidationFailed
from crewboard.forkserver import ForkServer
from crewboard.home import Home
from crewboard.mcpspec import McpError, run_servers
from crewboard.processes import RunnerExit, RunnerProcess, describe_exit, run_runner
from crewboard.providers import resolve_model
from crewboard.runspec import ModelDef, RunnerSpec, agents_from_json
from crewboard.sessionlog import (
    LogWriter,
    Record,
    ensure_terminal,
    is_terminal,
    last_record,
    read_records,
    split_turns,
)

log = logging.getLogger(__name__)

# Earlier turns handed to the model as context; older ones stay in the log only.
HISTORY_TURNS = 50
# How long a stopped runner gets between SIGTERM and SIGKILL when the web
# process shuts down (it must be gone, and recorded, within 5 s).
SHUTDOWN_GRACE_S = 2.0
STDERR_TAIL_BYTES = 4000
# The stop reason of turns stopped because the web process is shutting down.
SHUTDOWN = "the web server shut down"


def history_messages(records: list[Record], max_turns: int = HISTORY_TURNS) -> list[dict[str, str]]:
    """The conversation so far, as a runner's ``messages``: each finished turn
    gives its user message and its final answer. Turns that ended in an error
    or a block, or are still open, are left out: their question has no answer
    the model could build on."""
    messages: list[dict[str, str]] = []
    for turn in split_turns(records):
        user = next((r for r in turn if r.get("type") == "user_message"), None)
        last = turn[-1]
        if user is None or last.get("type") != "final_result":
            continue
        messages.append({"role": "user", "content": str(user.get("text", ""))})
        messages.append({"role": "assistant", "content": str(last.get("text", ""))})
    return messages[-2 * max_turns :] if max_turns else []


def close_open_turn(path: Path, message: str) -> Record | None:
    """If the log's last turn has no terminal record (the web process died
    during it), end it with an ``error`` so the next turn starts clean."""
    last = last_record(path)
    if last is None or is_terminal(last):
        return None
    return ensure_terminal(path, message)


def end_turn(path: Path, after_seq: int, prompt: str, message: str) -> Record | None:
    """After a turn's runner is reaped: end the turn with an ``error`` unless
    the runner wrote its terminal record. A runner that died before writing
    anything still leaves the user's message and the error in the log."""
    last = last_record(path)
    if last is not None and int(last.get("seq", 0)) > after_seq:
        return ensure_terminal(path, message)
    with LogWriter(path) as writer:
        writer.append("user_message", text=prompt)
        return writer.append("error", message=message)


@dataclass(eq=False)
class Turn:
    """One running turn. Its records are those of the log with ``seq`` above
    ``after_seq``, which is known once ``ready`` is set; ``finished`` is set
    once the runner is reaped and the log ends with the turn's terminal record."""

    session_id: int
    owner_id: int
    log_path: Path
    after_seq: int
    prompt: str
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    ready: trio.Event = field(default_factory=trio.Event)
    finished: trio.Event = field(default_factory=trio.Event)
    proc: RunnerProcess | None = None
    stop_reason: str | None = None
    # The request that asked for the turn (crewboard.logs), and the provider
    # its model is served by (crewboard.metrics).
    request_id: str | None = None
    provider: str | None = None
    # Ships the turn's records to a PostgreSQL board as they are written.
    shipper: records.Shipper | None = None


async def serve_chat_turns(
    config: Config,
    home: Home,
    *,
    task_status: trio.TaskStatus[ChatTurns] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Own the web process's chat turns: start a runner template, hand a ready
    :class:`ChatTurns` to ``task_status.started()``, and run its turns until
    cancelled or :meth:`ChatTurns.close` is called. On the way out every
    running turn is stopped and recorded as stopped, then the template."""
    template = ForkServer()
    turns: ChatTurns | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(template.serve)
            turns = ChatTurns(config, home, nursery, template)
            try:
                task_status.started(turns)
                await turns._closing.wait()
            finally:
                with trio.CancelScope(shield=True):
                    await turns.stop_all()
                nursery.cancel_scope.cancel()  # the template, now that no turn needs it
    finally:
        if turns is not None:
            turns._closed.set()


class ChatTurns:
    """The chat turns of one web process. Made by :func:`serve_chat_turns`;
    one built directly, without a template, spawns each turn's runner."""

    def __init__(
        self,
        config: Config,
        home: Home,
        nursery: trio.Nursery,
        template: ForkServer | None = None,
    ) -> None:
        self.config = config
        self.home = home
        self._nursery = nursery
        self._template = template
        self._turns: dict[int, Turn] = {}
        self._deleting: set[int] = set()
        self._gone: dict[int, trio.Event] = {}
        self._closing = trio.Event()
        self._closed = trio.Event()

    def running(self, session_id: int) -> Turn | None:
        return self._turns.get(session_id)

    def is_live(self, session_id: int) -> bool:
        return session_id in self._turns

    def running_by_owner(self) -> dict[int, int]:
        """How many turns each user has running, by user id."""
        counts: dict[int, int] = {}
        for turn in self._turns.values():
            counts[turn.owner_id] = counts.get(turn.owner_id, 0) + 1
        return counts

    def gone(self, session_id: int) -> trio.Event:
        """Set once the session is being deleted: a stream following its log
        ends before the id, and with it the log's path, can be handed to a
        new session of someone else."""
        return self._gone.setdefault(session_id, trio.Event())

    async def start(self, session: ChatSession, prompt: str, presets: dict[str, Preset]) -> Turn:
        """Start a turn of ``session`` answering ``prompt``; returns once its
        runner runs. Conflict if a turn is running or the session is being
        deleted; TooManyRequests if the session's owner already runs as many
        turns as they may; ValidationFailed if its agent or model cannot be
        used now."""
        session_id = session.id
        if self._closing.is_set():
            raise Conflict("the web server is shutting down")
        if session_id in self._deleting:
            raise Conflict("the session is being deleted")
        if session_id in self._turns:
            raise Conflict(
                "a reply is still being written in this session (in another tab, perhaps); "
                "wait for it, or stop it by closing the session",
                {"turnRunning": True},
            )
        owner_id = session.owner_id
        limits.check_chat_turns(
            self.config.chat_turns_per_user, self.running_by_owner().get(owner_id, 0)
        )
        path = self.home.chat_log(session_id)
        # Claimed before the first await, so a second message (or a turn past
        # the owner's limit) is refused at once.
        turn = self._turns[session_id] = Turn(
            session_id, owner_id, path, 0, prompt, request_id=logs.current_request_id()
        )
        try:
            # Once accepted, the turn starts even if the client hangs up at
            # this very moment: a turn never depends on its first reader.
            with trio.CancelScope(shield=True):
                spec = await trio.to_thread.run_sync(self._prepare, session, turn, presets)
                turn.ready.set()
                await self._nursery.start(self._run, turn, spec)
        except BaseException:
            self._turns.pop(session_id, None)
            turn.ready.set()
            turn.finished.set()
            raise
        return turn

    def _prepare(self, session: ChatSession, turn: Turn, presets: dict[str, Preset]) -> RunnerSpec:
        """The runner's spec (on a worker thread: it reads the log)."""
        if session.agent not in presets:
            raise ValidationFailed(
                f"the session's agent {session.agent!r} is no longer available; reopen the "
                "session with another agent",
                {"agent": f"unknown agent {session.agent!r}"},
            )
        model = resolve_model(session.model_spec, self.config)
        key = records.chat_key(session.id) if records.enabled() else None
        if key is not None:
            records.restore_missing(key, turn.log_path)
        close_open_turn(turn.log_path, "the turn was interrupted (the web server stopped)")
        earlier = read_records(turn.log_path)
        turn.after_seq = int(earlier[-1].get("seq", 0)) if earlier else 0
        if key is not None:
            records.store_missing(key, earlier)
            turn.shipper = records.Shipper(key, turn.log_path, turn.after_seq)
        ident = self.home.chat_workspace_id(session.id)
        turn.provider = str(model.get("provider") or "") or None
        agents = run_agents(presets, session.agent)
        try:
            mcp = run_servers(self.config.mcp, agents)
        except McpError as exc:
            raise ValidationFailed(str(exc), {"agent": str(exc)}) from exc
        return RunnerSpec(
            run_id=f"{ident}-{turn.after_seq + 1}",
            kind="chat",
            agent_id=session.agent,
            agents=agents_from_json(agents),
            mcp=mcp,
            model=ModelDef.from_json(model),
            messages=tuple(history_messages(earlier)),
            prompt=turn.prompt,
            log_path=turn.log_path,
            workspace=self.home.workspace(ident),
            artifact_dir=self.home.artifact_dir(ident),
            limits=self.config.runner_limits(),
            request_id=turn.request_id,
        )

    async def _run(
        self, turn: Turn, spec: RunnerSpec, *, task_status: trio.TaskStatus[None]
    ) -> None:
        """The turn's task: run its runner, and always close its turn in the
        log, even when the runner could not be started."""

        async def started(proc: RunnerProcess) -> None:
            turn.proc = proc
            if turn.shipper is not None:
                self._nursery.start_soon(turn.shipper.serve_shipping)
            if self.config.chat_turn_timeout_s > 0:
                turn.scope.deadline = trio.current_time() + self.config.chat_turn_timeout_s
            task_status.started()

        try:
            with logs.bind(requestId=turn.request_id, sessionId=turn.session_id):
                await run_runner(
                    spec,
                    turn.scope,
                    grace_s=partial(self._stop_grace_s, turn),
                    started=started,
                    ended=partial(self._end, turn),
                    template=self._template,
                )
        except BaseException:
            if turn.proc is None:  # it never started; the turn still ends in the log
                with trio.CancelScope(shield=True):
                    await self._end(turn, None)
            raise

    async def _end(self, turn: Turn, runner_exit: RunnerExit | None) -> None:
        """After the reap (``None``: the runner never started): end the turn
        in the log, report what a failed runner printed, free the session."""
        code = runner_exit.returncode if runner_exit is not None else None
        message = self._end_message(turn, code)
        shipping_on = False
        try:
            await trio.to_thread.run_sync(
                end_turn, turn.log_path, turn.after_seq, turn.prompt, message
            )
            if turn.shipper is not None:
                shipping_on = await self._ship_rest(turn, turn.shipper)
            terminal = await trio.to_thread.run_sync(last_record, turn.log_path)
            metrics.chat_turn_finished(_turn_outcome(terminal, turn.stop_reason))
            if turn.provider is not None:
                metrics.provider_usage(turn.provider, "chat", terminal)
            if runner_exit is not None:
                _report_stderr(runner_exit, turn.session_id)
            await db.call(chats.touch, turn.session_id, now=utcnow())
        except Exception:
            log.exception("chat session %s: cannot close the turn", turn.session_id)
        finally:
            if turn.shipper is not None and not shipping_on:
                turn.shipper.stop()
            self._turns.pop(turn.session_id, None)
            turn.finished.set()

    async def _ship_rest(self, turn: Turn, shipper: records.Shipper) -> bool:
        """The turn's last records into the board. True if the board was
        briefly away: the shipper then goes on trying by itself until the
        turn's terminal record is in, since other nodes follow the turn by
        it (and would otherwise show it running for ever)."""
        try:
            await db.call(shipper.ship_rest)
        except Exception as exc:  # only the board's transient errors get here
            log.warning(
                "chat session %s: the turn's last records wait for the board (%s)",
                turn.session_id,
                exc,
            )
            if turn.proc is None:  # its shipper never started
                self._nursery.start_soon(shipper.serve_shipping)
            return True
        return False

    def _stop_grace_s(self, turn: Turn) -> float:
        """The grace of a turn's runner, asked as it is stopped. A turn whose
        deadline passed is past its time limit: it gets none, so that the
        turn ends with the error saying so rather than the runner's own
        "cancelled". A turn stopped without a reason of its own is being
        stopped with the web process."""
        if turn.stop_reason is None and turn.scope.cancelled_caught:
            turn.stop_reason = (
                f"{limits.TURN_TIME_LIMIT} of {self.config.chat_turn_timeout_s:g} s, "
                f"{limits.CHAT_TURN_SECONDS.setting}"
            )
            log.warning(
                "chat session %s: the turn was stopped: %s", turn.session_id, turn.stop_reason
            )
            return 0.0
        if turn.stop_reason is None:
            turn.stop_reason = SHUTDOWN
        if turn.stop_reason == SHUTDOWN:
            return min(self.config.grace_s, SHUTDOWN_GRACE_S)
        return self.config.grace_s

    @staticmethod
    def _end_message(turn: Turn, code: int | None) -> str:
        if turn.stop_reason is not None:
            return f"the turn was stopped ({turn.stop_reason})"
        if code is None:
            return "the turn's runner could not be started"
        return f"the runner {describe_exit(code)} before it finished the turn"

    async def stop(self, session_id: int, reason: str) -> bool:
        """Stop the session's running turn and wait until it is recorded as
        stopped. False if no turn was running."""
        turn = self._turns.get(session_id)
        if turn is None:
            return False
        if turn.stop_reason is None:
            turn.stop_reason = reason
        turn.scope.cancel()
        await turn.finished.wait()
        return True

    async def stop_all(self) -> None:
        """Stop every running turn (the web process is shutting down)."""
        async with trio.open_nursery() as nursery:
            for session_id in list(self._turns):
                nursery.start_soon(self.stop, session_id, SHUTDOWN)

    async def close(self) -> None:
        """Stop every running turn and the runner template, and wait until
        :func:`serve_chat_turns` is done (the web process is shutting down)."""
        self._closing.set()
        if self._template is None:
            await self.stop_all()
        else:
            await self._closed.wait()

    @contextmanager
    def deleting(self, session_id: int) -> Iterator[None]:
        """Hold off new turns of a session while it is deleted; Conflict if a
        turn is running."""
        if session_id in self._turns:
            raise Conflict(
                "a turn is running in this session; close the session (POST "
                "/api/session/delete/<id>) to stop it, then delete it"
            )
        if session_id in self._deleting:
            raise Conflict("the session is already being deleted")
        self._deleting.add(session_id)
        self._gone.pop(session_id, trio.Event()).set()
        try:
            yield
        finally:
            self._deleting.discard(session_id)


def _turn_outcome(terminal: Record | None, stop_reason: str | None) -> str:
    """How a turn ended, as metrics count it."""
    kind = terminal.get("type") if terminal else None
    if kind == "final_result":
        return "succeeded"
    if kind == "blocked":
        return "blocked"
    return "stopped" if stop_reason is not None else "failed"


def _report_stderr(runner_exit: RunnerExit, session_id: int) -> None:
    """Log the end of what a failed runner printed."""
    tail = runner_exit.stderr[-STDERR_TAIL_BYTES:].decode(errors="replace").strip()
    if tail and runner_exit.returncode != 0:
        log.warning(
            "chat session %s: the runner %s; its last output:\n%s",
            session_id,
            describe_exit(runner_exit.returncode),
            tail,
        )
