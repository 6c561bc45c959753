"""The runner's lease watchdog: a job runner stops itself once its
supervisor stops renewing the run's lease.

The supervisor touches the lease file (``RunnerSpec.lease``) each time it
renews the run's lease on the board. The runner's control thread
(``runner/main.py``) asks a :class:`LeaseWatch` at least every
:attr:`LeaseWatch.every_s`; it notes when the file last changed, on the
monotonic clock. If the file has not changed for :data:`LAPSE_AT` of a
lease, the supervisor is frozen, cut off from the board or gone, and a peer
may soon rescue the run: the runner ends it at once (an ``error`` record,
its tools' processes killed, exit :data:`crewboard.runspec.LEASE_LAPSED_EXIT`),
well before the lease expires on the board's clock.
"""

from __future__ import annotations

import os
import time
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


class LeaseWatch:
    """Whether ``lease.path`` has gone untouched for :data:`LAPSE_AT` of a
    lease, counted from the watch's start at the latest."""

    def __init__(self, lease: Lease) -> None:
        self.path = lease.path
        self.window_s = lease.seconds * LAPSE_AT
        self.every_s = min(CHECK_EVERY_S, self.window_s / 8)
        self._seen = _touched(self.path)
        self._seen_at = self._checked_at = time.monotonic()

    def lapsed(self) -> bool:
        """Look at the file if :attr:`every_s` has passed since the last look."""
        now = time.monotonic()
        if now - self._checked_at < self.every_s:
            return False
        self._checked_at = now
        touched = _touched(self.path)
        if touched != self._seen:
            self._seen, self._seen_at = touched, now
            return False
        return now - self._seen_at > self.window_s
