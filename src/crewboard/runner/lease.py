"""The runner's lease watchdog: a job runner stops itself once its
supervisor stops renewing the run's lease.

The supervisor touches the lease file (``RunnerSpec.lease``) each time it
renews the run's lease on the board. A thread here notes when the file last
changed, on the monotonic clock; if it has not changed for
:data:`LAPSE_AT` of a lease, the supervisor is frozen, cut off from the
board or gone, and a peer may soon rescue the run: the runner ends it at
once (an ``error`` record, its tools' processes killed, exit
:data:`crewboard.runspec.LEASE_LAPSED_EXIT`), well before the lease expires
on the board's clock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from crewboard.runspec import Lease

# Of a lease, how long an untouched file is tolerated: the rest covers the
# time between the board's renewal and the touch, and stopping the runner.
LAPSE_AT = 0.75
# How often the file is looked at, at most (a stat(2) each time).
CHECK_EVERY_S = 1.0


def _touched(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def watch_lease(lease: Lease, on_lapse: Callable[[], object]) -> threading.Thread:
    """Start a daemon thread that calls ``on_lapse`` (which ends the process)
    once ``lease.path`` has gone untouched for :data:`LAPSE_AT` of a lease,
    counted from now at the latest."""
    window_s = lease.seconds * LAPSE_AT
    every_s = min(CHECK_EVERY_S, window_s / 8)

    def serve() -> None:
        seen = _touched(lease.path)
        seen_at = time.monotonic()
        while True:
            time.sleep(every_s)
            touched = _touched(lease.path)
            if touched != seen:
                seen, seen_at = touched, time.monotonic()
            elif time.monotonic() - seen_at > window_s:
                on_lapse()
                return

    thread = threading.Thread(target=serve, name="lease", daemon=True)
    thread.start()
    return thread
