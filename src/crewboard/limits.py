"""Per-user limits: every limit the server holds one user to, its setting,
its default, and how it is checked — in one place.

=====================  ==================================  =======  ============================
limit (``key``)        setting                             default  over it
=====================  ==================================  =======  ============================
``chatTurns``          ``CREWBOARD_CHAT_TURNS_PER_USER``   2        429 + ``Retry-After``
``chatTurnSeconds``    ``CREWBOARD_CHAT_TURN_TIMEOUT_S``   900      the turn ends with ``error``
``schedules``          ``CREWBOARD_SCHEDULES_PER_USER``    100      409 ``limit_reached``
``queuedJobs``         ``CREWBOARD_QUEUED_JOBS_PER_USER``  1000     409 ``limit_reached``
``sessions``           ``CREWBOARD_SESSIONS_PER_USER``     1000     409 ``limit_reached``
=====================  ==================================  =======  ============================

Each is a field of :class:`crewboard.config.Config`, so it is set like any
other setting (flag, environment, ``crewboard.toml``); 0 turns it off.

How each is checked:

- **Counts** (schedules, queued jobs — waiting and ready, a crew counting all
  its jobs, an unblock or redo the jobs it queues again, a schedule's fire
  its crew — and saved chat sessions) are checked by
  :func:`crewboard.board.usage.check_room` inside the write transaction that
  inserts, so parallel requests cannot overshoot: SQLite's ``BEGIN
  IMMEDIATE`` serialises writers, and on PostgreSQL the owner's user row is
  locked first. A refusal is :class:`LimitReached` naming the limit, its
  maximum and the count.
- **Chat turns at once** are counted by the web process that runs them
  (:class:`crewboard.web.chat.ChatTurns`, which owns every turn) when a turn
  is asked for: :func:`check_chat_turns`.
- **A chat turn's time** is the deadline of the turn's cancel scope; when it
  passes, the runner is stopped and the turn ends with an ``error`` record
  (:data:`TURN_TIME_LIMIT` says why), which the chat stream sends as its
  ``error`` frame and the web log records.

Administrators see every user's usage against these limits at
``GET /api/admin/usage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from crewboard.errors import Conflict, TooManyRequests

if TYPE_CHECKING:
    from crewboard.config import Config


@dataclass(frozen=True)
class Limit:
    """One per-user limit: ``key`` names it in errors and the usage view,
    ``field`` is its :class:`~crewboard.config.Config` field."""

    key: str
    field: str
    default: float
    what: str

    @property
    def setting(self) -> str:
        return "CREWBOARD_" + self.field.upper()


CHAT_TURNS = Limit("chatTurns", "chat_turns_per_user", 2, "chat turns running at once")
CHAT_TURN_SECONDS = Limit(
    "chatTurnSeconds", "chat_turn_timeout_s", 900.0, "seconds one chat turn may run"
)
SCHEDULES = Limit("schedules", "schedules_per_user", 100, "schedules")
QUEUED_JOBS = Limit("queuedJobs", "queued_jobs_per_user", 1000, "queued (waiting or ready) jobs")
SESSIONS = Limit("sessions", "sessions_per_user", 1000, "saved chat sessions")

LIMITS: tuple[Limit, ...] = (CHAT_TURNS, CHAT_TURN_SECONDS, SCHEDULES, QUEUED_JOBS, SESSIONS)
# The limits on how many things one user keeps, checked when one is added.
COUNTED: tuple[Limit, ...] = (SCHEDULES, QUEUED_JOBS, SESSIONS)

# What a refused chat turn is told to wait: turns are short or end at their
# time limit, and a client retrying this often costs next to nothing.
CHAT_RETRY_AFTER_S = 5
# The stop reason of a turn that ran past its time limit.
TURN_TIME_LIMIT = "it ran past the chat turn time limit"


def configured(config: Config) -> dict[str, float | int]:
    """Every limit's configured value by key, as the usage view shows them."""
    return {limit.key: getattr(config, limit.field) for limit in LIMITS}


class LimitReached(Conflict):
    """Adding this would take the user past one of their limits; the user's
    to fix by removing something (or the operator's, by raising it)."""

    code = "limit_reached"

    def __init__(self, limit: Limit, max_count: int, current: int, adding: int = 1) -> None:
        extra = f" and this adds {adding}" if adding != 1 else ""
        super().__init__(
            f"limit reached: you have {current} {limit.what}{extra}; the limit is "
            f"{max_count} ({limit.setting}). Remove some first.",
            {"limit": limit.key, "max": max_count, "current": current, "adding": adding},
        )


def check_count(limit: Limit, max_count: int, current: int, adding: int = 1) -> None:
    """LimitReached if ``current + adding`` would pass ``max_count`` (0: no limit)."""
    if max_count and current + adding > max_count:
        raise LimitReached(limit, max_count, current, adding)


def check_chat_turns(max_turns: int, running: int) -> None:
    """TooManyRequests (429, ``Retry-After``) if the user already runs
    ``max_turns`` chat turns (0: no limit)."""
    if max_turns and running >= max_turns:
        error = TooManyRequests(
            f"you already have {running} chat turns running, the most at once "
            f"({CHAT_TURNS.setting}); wait for one to end",
            CHAT_RETRY_AFTER_S,
        )
        error.details.update({"limit": CHAT_TURNS.key, "max": max_turns, "current": running})
        raise error
