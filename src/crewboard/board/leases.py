"""Run leases and the board's clock.

A live run is held by its supervisor for as long as its lease lasts
(``run.lease_expires_at``): set at the claim, renewed with every heartbeat
(:func:`renew`), one statement for all of the supervisor's live runs. A
renewal only extends leases that have not yet expired, so once a lease has
passed the run is lost to its supervisor for good, and a peer may rescue it
(``board/recovery.py``).

Every lease and liveness time is the board's clock, never a supervisor
host's: PostgreSQL's ``now()``, the same for every node whatever their clocks
say; on SQLite, whose writers all share one host, that host's clock. Board
functions that take ``now=`` use it when given (tests' virtual time), else
the board's clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import peewee

from crewboard.board.db import execute, is_sqlite, write
from crewboard.board.models import Run
from crewboard.clock import utcnow

# A run's lease when its claimer names none (config.py run_lease_s sets it).
DEFAULT_LEASE_S = 15.0
# The board's clock as a PostgreSQL expression, in the UTC the board stores.
_PG_NOW = "(now() AT TIME ZONE 'UTC')"
# The time the caller gave (a test's virtual time), else the board's clock.
_PG_NOW_OR_GIVEN = f"COALESCE(CAST(? AS timestamp), {_PG_NOW})"

# A lease at the claim, as a value of the run's INSERT (see lease_at_claim).
CLAIM_LEASE_SQLITE = "?"
CLAIM_LEASE_PG = f"{_PG_NOW} + ? * interval '1 second'"

_RENEW_SQLITE = """
UPDATE run SET lease_expires_at = ?
WHERE outcome = 'running' AND supervisor_id = ? AND lease_expires_at > ?
RETURNING id
"""
_RENEW_PG = f"""
UPDATE run SET lease_expires_at = {_PG_NOW_OR_GIVEN} + ? * interval '1 second'
WHERE outcome = 'running' AND supervisor_id = ? AND lease_expires_at > {_PG_NOW_OR_GIVEN}
RETURNING id
"""


def _ts(when: datetime) -> str:
    return Run.lease_expires_at.db_value(when)


def board_now() -> datetime:
    """The time by the board's clock (see the module docstring): one
    ``SELECT now()`` on PostgreSQL, the start of the current transaction."""
    if is_sqlite():
        return utcnow()
    (value,) = execute("SELECT now()").fetchone()
    return value.astimezone(UTC)


def clock_value(now: datetime | None) -> datetime | peewee.Node:
    """``now`` if given, else the board's clock as a value a peewee query can
    write or compare with (an SQL expression on PostgreSQL)."""
    if now is not None:
        return now
    return utcnow() if is_sqlite() else peewee.SQL(_PG_NOW)


def claim_lease_sql(sqlite: bool) -> str:
    """The lease a claimed run starts with, as a value of its INSERT
    (:func:`claim_lease_param` gives its one parameter)."""
    return CLAIM_LEASE_SQLITE if sqlite else CLAIM_LEASE_PG


def claim_lease_param(now: datetime, lease_s: float, sqlite: bool) -> object:
    """The parameter of :func:`claim_lease_sql`: on SQLite the claim's time
    plus the lease, on PostgreSQL the lease in seconds (added to ``now()``)."""
    return _ts(now + timedelta(seconds=lease_s)) if sqlite else float(lease_s)


@write
def renew(supervisor_id: str, lease_s: float, *, now: datetime | None = None) -> set[int]:
    """Extend by ``lease_s`` the lease of each live run of ``supervisor_id``
    whose lease has not expired; returns those runs, the ones it still holds.
    Its other live runs are lost to it: their runners must stop."""
    if is_sqlite():
        at = now or utcnow()
        params: tuple[object, ...] = (
            _ts(at + timedelta(seconds=lease_s)),
            supervisor_id,
            _ts(at),
        )
        rows = execute(_RENEW_SQLITE, params).fetchall()
    else:
        given = _ts(now) if now is not None else None
        rows = execute(_RENEW_PG, (given, float(lease_s), supervisor_id, given)).fetchall()
    return {run_id for (run_id,) in rows}


def lease_lapsed(run_id: int, *, now: datetime) -> bool:
    """Inside a write transaction: whether the live run's lease has passed,
    its row locked on PostgreSQL so no renewal slips in before the caller
    closes it."""
    lock = "" if is_sqlite() else " FOR UPDATE"
    row = execute(f"SELECT lease_expires_at FROM run WHERE id = ?{lock}", (run_id,)).fetchone()
    if row is None or row[0] is None:
        return False
    expires_at = Run.lease_expires_at.python_value(row[0])
    return expires_at is not None and expires_at <= now
