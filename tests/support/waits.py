"""Waiting in tests: for a condition, with a deadline, never a fixed sleep.

A test waits for what a user would see (a board row, a log record, a process
gone) and fails, saying what it last saw, if that does not come in time.
Deadlines are generous: they catch a hang, they do not measure speed. Where a
test must show that something did *not* happen, it waits for a later event
that would have come after it, then checks.

:func:`wait_until` is for plain code (tests that drive processes from the
test's thread); :func:`wait_for` is for trio code, and its probe may be async
(a board read through ``db.call``, an HTTP request).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

T = TypeVar("T")

# How often a condition is looked at again.
POLL_S = 0.02


def wait_until(
    predicate: Callable[[], T], timeout_s: float = 10, what: str = "", every_s: float = POLL_S
) -> T:
    """Call ``predicate`` until it returns a truthy value, and return that;
    fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            described = what or getattr(predicate, "__name__", "the condition")
            raise AssertionError(f"timed out after {timeout_s} s waiting for {described}")
        time.sleep(every_s)


async def wait_for(
    probe: Callable[[], T | Awaitable[T]],
    timeout_s: float = 10,
    what: str = "the condition",
    every_s: float = POLL_S,
) -> T:
    """Call ``probe`` (awaiting it if it is async) until it gives a truthy
    value, and return that; fail after ``timeout_s``, saying what it last gave."""
    last: object = None
    try:
        with trio.fail_after(timeout_s):
            while True:
                value = probe()
                if inspect.isawaitable(value):
                    value = await value
                last = value
                if value:
                    return value  # type: ignore[return-value]
                await trio.sleep(every_s)
    except trio.TooSlowError as exc:
        message = f"timed out after {timeout_s} s waiting for {what}; last saw {last!r}"
        raise AssertionError(message) from exc
