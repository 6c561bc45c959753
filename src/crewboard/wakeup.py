"""Waking the supervisor: one datagram to the unix socket it binds in the home
(``run/supervisor.sock``). Neutral ground: the web process calls
:func:`wake_supervisor` right after it commits user intent (a new crew, a
cancel request…), so the supervisor acts on it at once instead of at its next
poll. A wake-up is only a hint: if it is lost, the poll (at least once a
second) picks the change up anyway, so sending never blocks and never raises.

The socket reaches only the supervisor of the same home. On a PostgreSQL
board, supervisors on other hosts hear the wake-up the board's write itself
sent as it committed (:mod:`crewboard.board.wake`).
"""

from __future__ import annotations

import os
import socket

from crewboard.home import Home

WAKE_MESSAGE = b"wake"


def wake_supervisor(home: Home | str | os.PathLike[str]) -> bool:
    """Nudge the supervisor of ``home`` (a :class:`Home` or its root). True if
    the datagram was handed to a listening socket; False if no supervisor is
    listening (or its socket buffer is full), which is never an error."""
    path = home.wake_socket if isinstance(home, Home) else Home(home).wake_socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(WAKE_MESSAGE, str(path))
    except OSError:
        return False
    return True
