"""Chat sessions: ``/api/session/*``.

The id routes (``get``, ``delete``, ``newUserMessage``) serve the session's
owner and admins (anyone else is told it does not exist); the name routes
(``replay``, ``byName``, ``names``) address the caller's own sessions.

A turn streams ``chunk`` frames (one per step record of the turn's log),
then ``done`` (the final result with its ``html`` and the session) or
``error``. Replay re-frames the stored log as ``user_message`` → ``chunk``… →
``final_result`` (or ``error``) per turn and follows a turn still running.
A turn ended by the agent's block tool ends with its ``blocked`` record: as
``done`` live and as ``final_result`` in replay, ``html`` holding the reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import trio
from quart import Blueprint, jsonify

from crewboard.board import chats, db
from crewboard.board.models import ChatSession
from crewboard.clock import utcnow
from crewboard.errors import NotFound, ValidationFailed
from crewboard.providers import DEFAULT_MODEL, resolve_model
from crewboard.sessionlog import Record, is_terminal
from crewboard.web import params, sse
from crewboard.web.api.agents import current_presets
from crewboard.web.auth.guards import check_owner, login_required, require_principal
from crewboard.web.chat import ChatTurns, Turn
from crewboard.web.render import render_markdown
from crewboard.web.state import state
from crewboard.web.validate import Fields, json_object

bp = Blueprint("sessions", __name__, url_prefix="/api/session")

MAX_MESSAGE_LENGTH = 100_000
# How long a stream waits, after the turn's terminal record, for the turn to
# be reaped, so that `done` reports the session idle and the next message is
# accepted at once.
REAP_WAIT_S = 10.0
# A replay following a turn looks this often whether the turn has ended.
REPLAY_CHECK_S = 1.0


def turns() -> ChatTurns:
    return state().services.chat_turns


# --- lookups ------------------------------------------------------------------


async def _session_by_id(session_id: int) -> ChatSession:
    """The session, if the caller owns it or is an admin."""
    row = await db.call(chats.get_session, session_id)
    if row is None:
        raise NotFound("no such chat session")
    check_owner(row.owner_id, "chat session")
    return row


async def _own_session_by_name(session_name: str) -> ChatSession:
    name = chats.check_name(session_name)
    row = await db.call(chats.get_by_name, require_principal().user_id, name)
    if row is None:
        raise NotFound("you have no chat session of that name")
    return row


def _public(row: ChatSession) -> dict[str, Any]:
    return chats.session_public(row, live=turns().is_live(row.id))


# --- routes -------------------------------------------------------------------


@bp.post("/create")
@login_required
async def create_session():
    who = require_principal()
    body = await json_object()
    fields = Fields(body, allowed={"agent", "modelSpec", "sessionName"})
    agent = fields.string("agent", max_length=64)
    model_spec = fields.string("modelSpec", required=False, max_length=200)
    name = body.get("sessionName")
    if name is not None:
        problem = chats.name_problem(name)
        if problem is not None:
            fields.fail("sessionName", problem)
    presets = await current_presets()
    if agent and "agent" not in fields.errors and agent not in presets:
        fields.fail("agent", f"unknown agent {agent!r} (known: {', '.join(presets)})")
    fields.done()
    assert agent is not None
    if model_spec is None:
        # Reopening with the same agent keeps the session's model; otherwise
        # the preset's model, else the offline one.
        existing = await db.call(chats.get_by_name, who.user_id, name) if name else None
        if existing is not None and existing.agent == agent:
            model_spec = existing.model_spec
        else:
            model_spec = presets[agent].model or DEFAULT_MODEL
    try:
        model_spec = resolve_model(model_spec, state().config)["spec"]
    except ValidationFailed as exc:
        raise ValidationFailed(str(exc), {"modelSpec": str(exc)}) from exc
    now = utcnow()
    row, created = await db.call(
        chats.open_session,
        who.user_id,
        name or chats.generated_name(agent, now=now),
        agent,
        model_spec,
        max_sessions=state().config.sessions_per_user,
        now=now,
    )
    if created:
        # Ids of deleted sessions can be handed out again: start with nothing
        # that a previous holder of this id left behind.
        await trio.to_thread.run_sync(state().home.remove_chat_files, row.id)
    return jsonify(_public(row)), 201 if created else 200


@bp.post("/newUserMessage/<id:session_id>")
@login_required
async def new_user_message(session_id: int):
    row = await _session_by_id(session_id)
    body = await json_object()
    fields = Fields(body, allowed={"message"})
    message = fields.string("message", max_length=MAX_MESSAGE_LENGTH, multiline=True)
    if message is not None and "message" not in fields.errors and not message.strip():
        fields.fail("message", "must not be empty")
    fields.done()
    assert message is not None
    presets = await current_presets()
    turn = await turns().start(row, message, presets)
    return sse.stream_response(_turn_frames(turn, row))


@bp.get("/replay/<path:session_name>")
@login_required
async def replay_session(session_name: str):
    row = await _own_session_by_name(session_name)
    after = sse.last_event_id()
    path = state().home.chat_log(row.id)
    if params.flag("follow"):
        return sse.stream_response(_follow_frames(path, after, turns().gone(row.id)))
    turn = turns().running(row.id)
    return sse.stream_response(_replay_frames(path, after, turn))


@bp.get("/names")
@login_required
async def session_names():
    rows = await db.call(chats.list_sessions, require_principal().user_id)
    return jsonify([chats.name_entry(row) for row in rows])


@bp.get("/get/<id:session_id>")
@login_required
async def get_session(session_id: int):
    return jsonify(_public(await _session_by_id(session_id)))


@bp.post("/delete/<id:session_id>")
@login_required
async def close_session(session_id: int):
    row = await _session_by_id(session_id)
    await turns().stop(row.id, "the session was closed")
    return "", 204


@bp.delete("/byName/<path:session_name>")
@login_required
async def delete_session(session_name: str):
    row = await _own_session_by_name(session_name)
    with turns().deleting(row.id):
        await db.call(chats.delete_session, row.id)
        await trio.to_thread.run_sync(state().home.remove_chat_files, row.id)
    return "", 204


# --- streams ------------------------------------------------------------------


def _with_html(record: Record) -> dict[str, Any]:
    source = record.get("text") if record.get("type") == "final_result" else record.get("reason")
    return {**record, "html": render_markdown(str(source or ""))}


def _replay_frame(record: Record) -> bytes:
    kind = str(record.get("type"))
    seq = int(record.get("seq", 0))
    if kind == "user_message":
        return sse.encode_frame("user_message", record, seq)
    if kind == "error":
        return sse.encode_frame("error", {"message": str(record.get("message", ""))}, seq)
    if is_terminal(record):
        return sse.encode_frame("final_result", _with_html(record), seq)
    return sse.encode_frame("chunk", record, seq)


async def _off_loop(encode: Callable[[Record], bytes], record: Record) -> bytes:
    """``encode(record)``, on a worker thread when the record holds large
    texts: rendering and encoding them would stall every other request."""
    if sse.text_size(record) > sse.INLINE_FRAME_BYTES:
        return await trio.to_thread.run_sync(encode, record)
    return encode(record)


async def _replay_all(path: Path, after: int) -> list[bytes]:
    stored = await state().services.log_hub.read_records(path, after)
    return await trio.to_thread.run_sync(lambda: [_replay_frame(record) for record in stored])


async def _turn_frames(turn: Turn, session: ChatSession) -> AsyncIterator[bytes]:
    """A live turn: ``chunk`` per step, then ``done`` or ``error``."""
    batches = state().services.log_hub.follow_batches(
        turn.log_path, turn.after_seq, idle_s=sse.PING_S
    )
    async with aclosing(batches):
        async for batch in batches:
            if batch is None:
                yield sse.PING
                continue
            for record in batch:
                if not is_terminal(record):
                    if record.get("type") != "user_message":
                        yield await sse.encode_frame_async("chunk", record, int(record["seq"]))
                    continue
                yield await _turn_end_frame(turn, session, record)
                return
    yield sse.encode_frame(
        "error", {"message": "the stream ended before the turn did; replay the session to see it"}
    )


async def _turn_end_frame(turn: Turn, session: ChatSession, record: Record) -> bytes:
    # Wait for the reap, so `done` shows the session idle and it takes the
    # next message at once.
    with trio.move_on_after(REAP_WAIT_S):
        await turn.finished.wait()
    seq = int(record["seq"])
    if record.get("type") == "error":
        return sse.encode_frame("error", {"message": str(record.get("message", ""))}, seq)
    row = await db.call(chats.get_session, session.id) or session
    public = _public(row)
    return await _off_loop(
        lambda done: sse.encode_frame("done", {**_with_html(done), "session": public}, seq), record
    )


async def _follow_frames(path: Path, after: int, gone: trio.Event) -> AsyncIterator[bytes]:
    """The stored log as frames, then every later turn as it is written (a
    second tab sees a turn another tab started), until the session is deleted."""
    pinger = sse.Pinger()
    batches = state().services.log_hub.follow_batches(
        path, after, idle_s=REPLAY_CHECK_S, until_terminal=False
    )
    async with aclosing(batches):
        async for batch in batches:
            if gone.is_set():
                return
            if batch is None:
                if pinger.due():
                    yield sse.PING
                continue
            for record in batch:
                yield await _off_loop(_replay_frame, record)
            pinger.sent()


async def _replay_frames(path: Path, after: int, turn: Turn | None) -> AsyncIterator[bytes]:
    """The stored log as frames; while ``turn`` runs, its records as they come."""
    if turn is None:
        for frame in await _replay_all(path, after):
            yield frame
        return
    await turn.ready.wait()
    pinger = sse.Pinger()
    hub = state().services.log_hub
    batches = hub.follow_batches(path, after, idle_s=REPLAY_CHECK_S, until_terminal=False)
    async with aclosing(batches):
        async for batch in batches:
            if batch is None:
                # Quiet for a while after the turn finished: its terminal
                # record was at or before `after`, so nothing is left to send.
                if turn.finished.is_set():
                    return
                if pinger.due():
                    yield sse.PING
                continue
            for record in batch:
                yield await _off_loop(_replay_frame, record)
                pinger.sent()
                if is_terminal(record) and int(record["seq"]) > turn.after_seq:
                    return
