"""What a run may write: each text it logs (a step's streamed text, the final
result) up to ``limits.maxResultBytes``, the whole log up to
``limits.maxLogBytes``.

A model that streams without end must not fill the disk, board.db and every
client's memory: past its cap a step's text is no longer logged (one note
says where it stopped), and a final result keeps its beginning and a note
while the whole text goes to an artifact. A log that reaches its own cap
ends the run with an ``error`` that says so (:class:`LogFull`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from crewboard.runner.session_log import RunLog

MIB = 1024 * 1024


def size_text(n_bytes: int) -> str:
    """``n_bytes`` for people: whole MiB when it is one, else bytes."""
    if n_bytes >= MIB and n_bytes % MIB == 0:
        return f"{n_bytes // MIB} MB"
    return f"{n_bytes} bytes"


def head(text: str, max_bytes: int) -> str:
    """The longest beginning of ``text`` that fits in ``max_bytes`` of UTF-8."""
    return text.encode()[:max_bytes].decode(errors="ignore")


class LogFull(Exception):
    """The run's log reached ``limits.maxLogBytes`` (the model's or the
    tools' output, not crewboard's fault): the run ends with an error."""


class CappedLog:
    """A :class:`RunLog` whose step records stop at ``max_bytes`` of log:
    the append that crosses it raises :class:`LogFull`. Terminal records are
    always written, so the run still ends in one."""

    def __init__(self, log: RunLog, path: Path, max_bytes: int) -> None:
        self._log = log
        self._path = path
        self.max_bytes = max_bytes

    @property
    def closed(self) -> bool:
        return self._log.closed

    @property
    def terminal(self) -> dict[str, Any] | None:
        return self._log.terminal

    def size(self) -> int:
        try:
            return os.stat(self._path).st_size
        except OSError:
            return 0

    def append(self, type: str, **fields: Any) -> bool:
        written = self._log.append(type, **fields)
        if written and self.size() > self.max_bytes:
            raise LogFull(
                f"the run's log reached its limit of {size_text(self.max_bytes)} "
                "(limits.maxLogBytes, CREWBOARD_MAX_LOG_BYTES); the run was stopped"
            )
        return written

    def append_pending(self, type: str, **fields: Any) -> dict[str, Any] | None:
        """A pending result is written whatever the log's size, as the
        terminal record it stands for is."""
        return self._log.append_pending(type, **fields)

    def finish(self, type: str, **fields: Any) -> bool:
        return self._log.finish(type, **fields)


class StepText:
    """One model step's streamed text, logged delta by delta up to
    ``max_bytes``; past it, one note and nothing more."""

    def __init__(self, log: CappedLog, agent_name: str, max_bytes: int) -> None:
        self._log = log
        self._agent_name = agent_name
        self.max_bytes = max_bytes
        self.logged_bytes = 0
        self.cut = False

    def __call__(self, delta: str) -> None:
        if self.cut:
            return
        size = len(delta.encode())
        if self.logged_bytes + size > self.max_bytes:
            self.cut = True
            kept = head(delta, self.max_bytes - self.logged_bytes)
            note = (
                f"\n\n[output cut here: this step's text passed the run's limit of "
                f"{size_text(self.max_bytes)} (limits.maxResultBytes); the whole text is "
                "saved as an artifact]"
            )
            self._log.append("text", agentName=self._agent_name, text=kept + note)
            return
        self.logged_bytes += size
        self._log.append("text", agentName=self._agent_name, text=delta)


def result_note(full_bytes: int, max_bytes: int, artifact: str) -> str:
    """What a cut final result says after its beginning."""
    return (
        f"\n\n[The answer was {full_bytes} bytes, over the run's limit of "
        f"{size_text(max_bytes)} (limits.maxResultBytes): only its beginning is shown here. "
        f"The whole answer is the artifact {artifact!r}.]"
    )
