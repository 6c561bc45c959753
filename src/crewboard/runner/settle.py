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
"""

from __future__ import annotations

import time
from pathlib import Path

# How often the acknowledgement file is read while a result waits on it.
ACK_POLL_S = 0.005
# The error a run ends with when its result was never acknowledged.
UNACKED = (
    "run interrupted: the board never acknowledged its result (its supervisor stopped shipping)"
)


def acked_seq(path: Path) -> int:
    """The highest seq the supervisor says the board holds; 0 if none yet."""
    try:
        return int(path.read_text() or 0)
    except (OSError, ValueError):
        return 0


def await_shipped(path: Path, seq: int, timeout_s: float) -> bool:
    """Wait until the board holds the records through ``seq``, by the
    acknowledgement file at ``path``. False if ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    while acked_seq(path) < seq:
        if time.monotonic() >= deadline:
            return False
        time.sleep(ACK_POLL_S)
    return True
