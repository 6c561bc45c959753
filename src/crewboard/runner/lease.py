"""The runner's lease watchdog: a job runner stops itself once its
supervisor stops renewing the run's lease.

The supervisor writes an empty line to the runner's stdin each time it renews
the run's lease on the board (no file per run: making and removing one for every
run cost the disk more than a short run costs itself). The runner's control
thread (``runner/main.py``) reads stdin and tells its :class:`LeaseWatch` of
each renewal, and asks it at least every :attr:`LeaseWatch.every_s` whether
the lease has lapsed. If no renewal has come for :data:`LAPSE_AT` of a
lease, the supervisor is frozen, cut off from the board or gone, and a peer
may soon rescue the run: the runner ends it at once (an ``error`` record,
its tools' processes killed, exit :data:`crewboard.runspec.LEASE_LAPSED_EXIT`),
well before the lease expires on the board's clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from crewboard.runspec import Lease

# Of a lease, how long the runner goes without a renewal: the rest covers
# the time between the board's renewal and its byte, and stopping the runner.
LAPSE_AT = 0.75
# How often the control thread wakes to ask, at most.
CHECK_EVERY_S = 1.0


class LeaseWatch:
    """Whether :data:`LAPSE_AT` of a lease has passed without a renewal,
    counted from the watch's start at the latest. ``clock``: monotonic
    seconds."""

    def __init__(self, lease: Lease, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = lease.seconds * LAPSE_AT
        self.every_s = min(CHECK_EVERY_S, self.window_s / 8)
        self._clock = clock
        self._renewed_at = clock()

    def renewed(self) -> None:
        """The supervisor has renewed the lease."""
        self._renewed_at = self._clock()

    def lapsed(self) -> bool:
        return self._clock() - self._renewed_at > self.window_s
