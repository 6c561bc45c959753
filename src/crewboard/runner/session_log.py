"""The runner's side of the session log: a thread-safe writer over
:class:`crewboard.sessionlog.LogWriter` that guarantees one terminal record.

Tool threads, the agent loop and the control thread (parent gone, SIGTERM) all
append through one :class:`RunLog`. Once a terminal record is written the log
is closed to everyone else, so a run's last line is always its one terminal
record, whichever of them got there first. Secrets handed to the runner are
scrubbed from every string written, as a last line of defence.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from crewboard.sessionlog import LogWriter

SCRUBBED = "***"


def scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` with every occurrence of each secret replaced, recursively."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, SCRUBBED)
        return value
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, secrets) for v in value]
    return value


class RunLog:
    def __init__(
        self, path: Path, secrets: tuple[str, ...] = (), stamp: dict[str, Any] | None = None
    ) -> None:
        self._writer = LogWriter(path)
        self._lock = threading.Lock()
        self._secrets = tuple(s for s in secrets if s)
        # Fields every terminal record carries (the run's request id).
        self._stamp = dict(stamp or {})
        self.terminal: dict[str, Any] | None = None

    def close(self) -> None:
        """Close the file (a runner never needs to: it exits)."""
        self._writer.close()

    @property
    def closed(self) -> bool:
        return self.terminal is not None

    def append(self, type: str, **fields: Any) -> bool:
        """Append a step record; a no-op (False) once the run has ended."""
        with self._lock:
            if self.terminal is not None:
                return False
            self._writer.append(type, **scrub(fields, self._secrets))
            return True

    def append_pending(self, type: str, **fields: Any) -> dict[str, Any] | None:
        """Append a step record carrying what a terminal record will (the
        stamp too), and return it as written; None once the run has ended."""
        with self._lock:
            if self.terminal is not None:
                return None
            fields = {**fields, **self._stamp}
            return self._writer.append(type, **scrub(fields, self._secrets))

    def finish(self, type: str, **fields: Any) -> bool:
        """Append the terminal record unless one was already written."""
        with self._lock:
            if self.terminal is not None:
                return False
            fields = {**fields, **self._stamp}
            self.terminal = self._writer.append(type, **scrub(fields, self._secrets))
            return True
