"""Chat sessions: one row per conversation a user keeps with a preset agent,
unique by (owner, session name). The conversation itself lives in the
session's JSONL log (``logs/chat/<id>.jsonl``); this module keeps only what
lists and lookups need.

Session names are chosen by users and travel in URLs, so they are checked
here, once, for every route that takes one.
"""

from __future__ import annotations

import secrets
import unicodedata
from datetime import datetime

import peewee

from crewboard import limits
from crewboard.board import usage
from crewboard.board.db import database, write
from crewboard.board.models import ChatSession
from crewboard.clock import iso
from crewboard.errors import ValidationFailed

MAX_NAME_LENGTH = 100
# Control, format (bidi overrides, zero-width spaces), surrogate and line
# separator characters make a name that displays as something else. The
# joiners stay allowed: emoji sequences need them.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_JOINERS = frozenset({"\u200c", "\u200d"})


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a session name, or None if it can."""
    if not isinstance(name, str):
        return "must be a string"
    if not name.strip():
        return "must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"must be at most {MAX_NAME_LENGTH} characters"
    if name != name.strip():
        return "must not start or end with spaces"
    if "/" in name or "\\" in name:
        return "must not contain path separators (/ or \\)"
    if ".." in name:
        return "must not contain '..'"
    if any(unicodedata.category(ch) in _BAD_CATEGORIES and ch not in _JOINERS for ch in name):
        return "must not contain control or invisible characters"
    return None


def check_name(name: object) -> str:
    """``name`` if it is a valid session name; else ValidationFailed on ``sessionName``."""
    problem = name_problem(name)
    if problem is not None:
        raise ValidationFailed(f"invalid session name: it {problem}", {"sessionName": problem})
    assert isinstance(name, str)
    return name


def generated_name(agent: str, *, now: datetime) -> str:
    """A fresh name for a session the user did not name, e.g.
    ``assistant 2026-11-28 21:00:00 3f2a``."""
    return f"{agent} {now:%Y-%m-%d %H:%M:%S} {secrets.token_hex(2)}"


def session_public(row: ChatSession, *, live: bool) -> dict[str, object]:
    """A session as the API shows it; ``live`` is whether a turn is running."""
    return {
        "id": row.id,
        "sessionName": row.session_name,
        "agent": row.agent,
        "modelSpec": row.model_spec,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "live": live,
    }


def name_entry(row: ChatSession) -> dict[str, object]:
    """A session as ``GET /api/session/names`` lists it."""
    return {"sessionName": row.session_name, "id": row.id, "updatedAt": iso(row.updated_at)}


@write
def open_session(
    owner_id: int,
    name: str,
    agent: str,
    model_spec: str,
    *,
    max_sessions: int | None = None,
    now: datetime,
) -> tuple[ChatSession, bool]:
    """Create the owner's session called ``name``, or reopen the one they have:
    its agent and model become the ones given, its history continues.
    Returns the row and whether it is new. LimitReached if a new one would
    pass ``max_sessions``."""
    check_name(name)
    row = ChatSession.get_or_none(
        (ChatSession.owner == owner_id) & (ChatSession.session_name == name)
    )
    if row is not None:
        ChatSession.update(agent=agent, model_spec=model_spec, updated_at=now).where(
            ChatSession.id == row.id
        ).execute()
        return ChatSession.get_by_id(row.id), False
    usage.check_room(limits.SESSIONS, owner_id, max_sessions)
    try:
        with database.atomic():
            row = ChatSession.create(
                owner=owner_id,
                session_name=name,
                agent=agent,
                model_spec=model_spec,
                created_at=now,
                updated_at=now,
            )
    except peewee.IntegrityError:
        # Another writer created it between our read and insert (PostgreSQL,
        # where the transaction does not hold the write lock from its start).
        row = ChatSession.get((ChatSession.owner == owner_id) & (ChatSession.session_name == name))
        return row, False
    return row, True


def get_session(session_id: int) -> ChatSession | None:
    return ChatSession.get_or_none(ChatSession.id == session_id)


def get_by_name(owner_id: int, name: str) -> ChatSession | None:
    return ChatSession.get_or_none(
        (ChatSession.owner == owner_id) & (ChatSession.session_name == name)
    )


def list_sessions(owner_id: int) -> list[ChatSession]:
    """The owner's sessions, most recently used first."""
    return list(
        ChatSession.select()
        .where(ChatSession.owner == owner_id)
        .order_by(ChatSession.updated_at.desc(), ChatSession.id.desc())
    )


@write
def touch(session_id: int, *, now: datetime) -> None:
    """Mark the session as just used (it moves to the top of the list)."""
    ChatSession.update(updated_at=now).where(ChatSession.id == session_id).execute()


@write
def delete_session(session_id: int) -> bool:
    """Remove the row; False if it was already gone."""
    return ChatSession.delete().where(ChatSession.id == session_id).execute() > 0
