"""A job runner's final result, settled with the board before it is final.

Where its supervisor ships the run's records into the board
(``RunnerSpec.ship_ack``), the runner writes the result as a
``result_pending`` record, waits until the supervisor acknowledges that the
board holds it, and only then writes ``final_result``. A supervisor frozen
or cut off never acknowledges: the runner's lease watchdog
(``runner/lease.py``) ends the run as interrupted, with no ``final_result``
in its log, and the peer that rescues the run reruns its job. A pending
result the board did get is the run's result however the runner ends:
recovery reads it from the board (``board/recovery.py``), so a job is never
completed twice.

The acknowledgements arrive on the runner's stdin, a seq on a line, read
by its control thread (``runner/main.py``) and told to :class:`Acks`.
"""

from __future__ import annotations

import threading

# The error a run ends with when its result was never acknowledged.
UNACKED = (
    "run interrupted: the board never acknowledged its result (its supervisor stopped shipping)"
)


class Acks:
    """The highest seq the supervisor says the board holds: told by the
    control thread as acknowledgements arrive, waited on by the run."""

    def __init__(self) -> None:
        self._seq = 0
        self._changed = threading.Condition()

    def tell(self, seq: int) -> None:
        with self._changed:
            if seq > self._seq:
                self._seq = seq
                self._changed.notify_all()

    def wait_for(self, seq: int, timeout_s: float) -> bool:
        """Wait until the board holds the records through ``seq``; False if
        ``timeout_s`` passes first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._seq >= seq, timeout_s)
