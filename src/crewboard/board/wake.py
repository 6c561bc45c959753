"""Waking every supervisor of a PostgreSQL board when a write gives them
work: a new crew, a job requeued or asked to stop, a schedule that changed.

A board function marked :func:`wakes_supervisors` sends
:data:`~crewboard.board.notify.WAKE` inside its own transaction, so the
wake-up reaches every host's supervisor when (and only if) the write commits,
and none can look before the change is there to see. On SQLite it sends
nothing: one host shares the board file, and the web nudges its supervisor
through the home's socket (:mod:`crewboard.wakeup`) after committing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from crewboard.board import notify

P = ParamSpec("P")
T = TypeVar("T")


def wakes_supervisors(fn: Callable[P, T]) -> Callable[P, T]:
    """Send the supervisors' wake-up once ``fn`` has written without error,
    in the same transaction: put it under :func:`~crewboard.board.db.write`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        result = fn(*args, **kwargs)
        notify.notify(notify.WAKE)
        return result

    return wrapper
