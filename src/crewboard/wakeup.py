"""Waking the supervisor: one datagram to the unix socket it binds in the home
(``run/supervisor.sock``). Neutral ground: the web process calls
:func:`wake_supervisor` right after it commits user intent (a new crew, a
cancel request…), so the supervisor acts on it at once instead of at its next
poll. A wake-up is only a hint: if it is lost, the poll (at least once a
second) picks the change up anyway, so sending never blocks and never raises.

A wake-up names what it is for, so only the parts of the supervisor with
something to look at go to the board: :data:`JOBS` (the dispatcher: work to
claim, a run to stop), :data:`SCHEDULES` (the scheduler) and
:data:`WEBHOOKS` (the webhook sender: deliveries queued). One that names
nothing known wakes them all.

The socket reaches only the supervisor of the same home. On a PostgreSQL
board, supervisors on other hosts hear the wake-up the board's write itself
sent as it committed (:mod:`crewboard.board.wake`), with the same words.
"""

from __future__ import annotations

import os
import socket

from crewboard.home import Home

JOBS = "jobs"
SCHEDULES = "schedules"
WEBHOOKS = "webhooks"
EVERYTHING = frozenset((JOBS, SCHEDULES, WEBHOOKS))


def wake_words(parts: tuple[str, ...]) -> str:
    """How a wake-up for ``parts`` is written (all of them if none)."""
    return " ".join(sorted(parts or EVERYTHING))


def woken_parts(message: bytes | str) -> frozenset[str]:
    """The parts a wake-up's words name; all of them if it names none."""
    text = message.decode(errors="replace") if isinstance(message, bytes) else message
    return (EVERYTHING & frozenset(text.split())) or EVERYTHING


def wake_supervisor(home: Home | str | os.PathLike[str], *parts: str) -> bool:
    """Nudge the ``parts`` of the supervisor of ``home`` (a :class:`Home` or
    its root; every part if none is named). True if the datagram was handed
    to a listening socket; False if no supervisor is listening (or its
    socket buffer is full), which is never an error."""
    path = home.wake_socket if isinstance(home, Home) else Home(home).wake_socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(wake_words(parts).encode(), str(path))
    except OSError:
        return False
    return True
