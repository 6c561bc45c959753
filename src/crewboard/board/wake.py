"""Waking every supervisor of a PostgreSQL board when a write gives them
work: a new crew, a job requeued or asked to stop, a schedule that changed.

A board function marked :func:`wakes_supervisors` sends
:data:`~crewboard.board.notify.WAKE` inside its own transaction, so the
wake-up reaches every host's supervisor when (and only if) the write commits,
and none can look before the change is there to see. Its payload names the
parts of the supervisor the write concerns (:mod:`crewboard.wakeup`). On
SQLite it sends nothing: one host shares the board file, and the web nudges
its supervisor through the home's socket after committing, naming the same
parts (:func:`woken_by`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from crewboard.board import notify
from crewboard.wakeup import wake_words

P = ParamSpec("P")
T = TypeVar("T")


def wakes_supervisors(*parts: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Send the supervisors' wake-up for ``parts`` once the function has
    written without error, in the same transaction: put it under
    :func:`~crewboard.board.db.write`."""
    words = wake_words(parts)

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            result = fn(*args, **kwargs)
            notify.notify(notify.WAKE, words)
            return result

        wrapper.__wakes__ = parts  # type: ignore[attr-defined]
        return wrapper

    return decorate


def woken_by(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The parts of the supervisor a board function marked
    :func:`wakes_supervisors` wakes."""
    return tuple(getattr(fn, "__wakes__", ()))
