"""Sign-in limits, kept in the board so that every web process shares them.

Three limits hold each attempt, all taken in one write transaction *before*
the password is hashed, so a burst of parallel guesses cannot slip past
them while earlier guesses are still being checked:

- the **pair** (account, client address): ``attempts`` per ``window_s``,
  then 429 — a guesser at one address gets a handful of tries per account;
- the **address**: ``ADDRESS_FACTOR`` times as many, over every account,
  then 429 — one address cannot sweep many accounts;
- the **account**, over every address: as many as the address. Past it the
  account is *slowed down*, not locked: an attempt waits (at most
  ``SLOWDOWN_MAX_S``) before its hash, and only a pair that has failed
  recently is refused. So a stranger's failures, from one address or many,
  never lock the owner out when they sign in from somewhere else.

Each limit is a generic cell rate (GCRA): one ``free_at`` per key, moved one
interval (``window_s / limit``) on by each attempt; a limit is reached while
``free_at`` lies more than ``window_s - interval`` ahead of now. A success
forgives its pair and gives the attempt back to the address and account.
Keys are hashes: the table never holds an email or an address in clear.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from crewboard.board.db import is_sqlite, write
from crewboard.board.models import LoginThrottle
from crewboard.errors import TooManyRequests

ADDRESS_FACTOR = 4
SLOWDOWN_MAX_S = 3.0


@dataclass(frozen=True)
class LoginKeys:
    """The three limits one attempt counts against."""

    pair: str
    address: str
    account: str

    @classmethod
    def of(cls, email: str, address: str) -> LoginKeys:
        return cls(
            pair=_digest("pair", f"{email}\n{address}"),
            address=_digest("address", address),
            account=_digest("account", email),
        )


def _digest(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Rate:
    """``limit`` attempts per ``window_s``, as a GCRA interval and tolerance."""

    limit: int
    window_s: float

    @property
    def interval_s(self) -> float:
        return self.window_s / self.limit

    @property
    def tolerance_s(self) -> float:
        return self.window_s - self.interval_s

    def wait_s(self, free_at: float, now: float) -> float:
        """How long until one more attempt fits (0: it fits now)."""
        return max(0.0, max(free_at, now) - self.tolerance_s - now)

    def charged(self, free_at: float, now: float) -> float:
        return max(free_at, now) + self.interval_s


def _locked_rows(keys: list[str], now: float) -> dict[str, LoginThrottle]:
    """The rows of ``keys``, made if missing, locked for this transaction
    (SQLite's BEGIN IMMEDIATE holds the whole board; PostgreSQL locks the
    rows, in key order so two attempts cannot deadlock). An existing row is
    touched rather than skipped, which locks it at once on PostgreSQL: a
    concurrent attempt's clean-up could otherwise delete it before the
    select below."""
    ordered = sorted(set(keys))
    LoginThrottle.insert_many([{"key": k, "free_at": now} for k in ordered]).on_conflict(
        conflict_target=[LoginThrottle.key],
        update={LoginThrottle.free_at: LoginThrottle.free_at},
    ).execute()
    query = LoginThrottle.select().where(LoginThrottle.key.in_(ordered)).order_by(LoginThrottle.key)
    if not is_sqlite():
        query = query.for_update()
    return {row.key: row for row in query}


def _refuse(wait_s: float) -> TooManyRequests:
    seconds = max(1, math.ceil(wait_s))
    return TooManyRequests(f"too many failed sign-ins; try again in {seconds} s", seconds)


@write
def take_login_attempt(keys: LoginKeys, attempts: int, window_s: float, *, now: float) -> float:
    """Count one sign-in attempt against its three limits, before its
    password is checked. Returns the seconds the attempt must wait before
    its hash (the account's slowdown; usually 0), or raises
    :class:`TooManyRequests` with nothing counted."""
    pair_rate = Rate(attempts, window_s)
    wide_rate = Rate(attempts * ADDRESS_FACTOR, window_s)
    # Rows whose limit has fully drained hold nothing: drop them as we go.
    LoginThrottle.delete().where(LoginThrottle.free_at < now).execute()
    rows = _locked_rows([keys.pair, keys.address, keys.account], now)
    pair, address, account = rows[keys.pair], rows[keys.address], rows[keys.account]
    refused = max(pair_rate.wait_s(pair.free_at, now), wide_rate.wait_s(address.free_at, now))
    if refused > 0:
        raise _refuse(refused)
    slowdown = wide_rate.wait_s(account.free_at, now)
    pair_has_failed = pair.free_at > now
    if slowdown > SLOWDOWN_MAX_S and pair_has_failed:
        raise _refuse(slowdown - SLOWDOWN_MAX_S)
    for row, rate in ((pair, pair_rate), (address, wide_rate), (account, wide_rate)):
        LoginThrottle.update(free_at=rate.charged(row.free_at, now)).where(
            LoginThrottle.id == row.id
        ).execute()
    return min(slowdown, SLOWDOWN_MAX_S)


@write
def login_succeeded(keys: LoginKeys, attempts: int, window_s: float) -> None:
    """The attempt was the account's owner: forgive the pair's failures and
    give the attempt back to the address and the account."""
    LoginThrottle.delete().where(LoginThrottle.key == keys.pair).execute()
    back = Rate(attempts * ADDRESS_FACTOR, window_s).interval_s
    LoginThrottle.update(free_at=LoginThrottle.free_at - back).where(
        LoginThrottle.key.in_([keys.address, keys.account])
    ).execute()
