"""The board's sign-in limits (board/login_throttle.py) on a real board.db,
in virtual time: what each limit lets through, the account's slowdown and
what a success forgives."""

from __future__ import annotations

import threading

import pytest

from crewboard.board import db
from crewboard.board.login_throttle import (
    ADDRESS_FACTOR,
    SLOWDOWN_MAX_S,
    LoginKeys,
    login_succeeded,
    take_login_attempt,
)
from crewboard.errors import TooManyRequests

ATTEMPTS, WINDOW_S = 5, 60.0
T0 = 1_800_000_000.0


def take(email: str, address: str, now: float) -> float:
    return take_login_attempt(LoginKeys.of(email, address), ATTEMPTS, WINDOW_S, now=now)


def test_a_pair_gets_its_attempts_then_429_until_the_window_drains(home):
    for _ in range(ATTEMPTS):
        assert take("a@x.test", "10.0.0.1", T0) == 0
    with pytest.raises(TooManyRequests) as refused:
        take("a@x.test", "10.0.0.1", T0)
    # One attempt comes back every window / attempts seconds.
    assert refused.value.headers["Retry-After"] == str(int(WINDOW_S / ATTEMPTS))
    assert take("a@x.test", "10.0.0.1", T0 + WINDOW_S / ATTEMPTS) == 0
    assert take("a@x.test", "10.0.0.1", T0 + 10 * WINDOW_S) == 0


def test_a_refused_attempt_counts_nothing(home):
    for _ in range(ATTEMPTS):
        take("a@x.test", "10.0.0.1", T0)
    for _ in range(50):
        with pytest.raises(TooManyRequests):
            take("a@x.test", "10.0.0.1", T0)
    # Had the refusals counted, the pair would still be shut a window later.
    assert take("a@x.test", "10.0.0.1", T0 + WINDOW_S / ATTEMPTS) == 0


def test_an_address_is_limited_across_accounts(home):
    for n in range(ATTEMPTS * ADDRESS_FACTOR):
        take(f"user{n}@x.test", "10.0.0.1", T0)
    with pytest.raises(TooManyRequests):
        take("fresh@x.test", "10.0.0.1", T0)
    assert take("fresh@x.test", "10.0.0.2", T0) == 0


def test_an_account_under_attack_slows_down_but_never_locks_out(home):
    wide = ATTEMPTS * ADDRESS_FACTOR
    for n in range(wide):
        assert take("owner@x.test", f"10.1.0.{n}", T0) == 0
    # Past the account's limit, a fresh address waits, at most SLOWDOWN_MAX_S...
    waits = [take("owner@x.test", f"10.2.0.{n}", T0) for n in range(10)]
    assert waits[0] > 0 and all(0 < w <= SLOWDOWN_MAX_S for w in waits)
    assert waits[-1] == SLOWDOWN_MAX_S
    # ...and an address that has failed recently is refused.
    with pytest.raises(TooManyRequests):
        take("owner@x.test", "10.1.0.0", T0)
    # The owner, from anywhere else, is slowed, never refused.
    assert 0 < take("owner@x.test", "192.0.2.7", T0) <= SLOWDOWN_MAX_S


def test_a_success_forgives_its_pair(home):
    keys = LoginKeys.of("a@x.test", "10.0.0.1")
    for _ in range(ATTEMPTS - 1):
        take("a@x.test", "10.0.0.1", T0)
    take("a@x.test", "10.0.0.1", T0)
    login_succeeded(keys, ATTEMPTS, WINDOW_S)
    for _ in range(ATTEMPTS):
        assert take("a@x.test", "10.0.0.1", T0) == 0


def test_keys_keep_no_email_or_address_in_clear(home):
    from crewboard.board.models import LoginThrottle

    take("secret@x.test", "203.0.113.9", T0)
    stored = " ".join(row.key for row in LoginThrottle.select())
    assert "secret" not in stored and "203.0.113" not in stored


def _race(n: int) -> list[str]:
    """``n`` threads, each with its own connection, take an attempt on the
    same pair at once; what each got."""
    barrier = threading.Barrier(n)
    got: list[str] = []

    def attempt() -> None:
        barrier.wait()
        try:
            take("a@x.test", "10.0.0.1", T0)
            got.append("taken")
        except TooManyRequests:
            got.append("refused")
        finally:
            db.close()

    threads = [threading.Thread(target=attempt) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return got


def test_racing_attempts_take_exactly_the_limit(home):
    got = _race(40)
    assert got.count("taken") == ATTEMPTS and got.count("refused") == 40 - ATTEMPTS


@pytest.mark.postgres
@pytest.mark.usefixtures("pg")
def test_racing_attempts_take_exactly_the_limit_on_postgresql():
    got = _race(40)
    assert got.count("taken") == ATTEMPTS and got.count("refused") == 40 - ATTEMPTS
