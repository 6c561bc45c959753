"""The JSONL session log: the single source of truth for a chat session or a job
run. Owns the record format, appending (runner and reaper), reading (replay,
results, recovery) and tailing (live SSE). Neutral ground: imported by the
runner, the supervisor and the web process alike, so it stays cheap to import
(trio is imported only by the async tail).

A record is one JSON object per line::

    {"seq": 4, "ts": "2026-11-28T21:00:00.000Z", "type": "text", ...}

``seq`` grows by one per record across the whole file (a chat log holds many
turns). A turn or run ends with exactly one terminal record: ``final_result``,
``blocked`` or ``error``.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from crewboard.clock import iso_now

if TYPE_CHECKING:
    from collections.abc import Iterator

TERMINAL_TYPES = frozenset({"final_result", "blocked", "error"})

Record = dict[str, Any]


def is_terminal(record: Record) -> bool:
    return record.get("type") in TERMINAL_TYPES


class LogWriter:
    """Appends records to one log file, one ``write(2)`` per record so a reader
    never sees half a line from a live writer, and every record is on disk
    (in the page cache) before ``append`` returns."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        last = last_record(self.path)
        self.seq = int(last["seq"]) if last else 0

    def append(self, type: str, **fields: Any) -> Record:
        self.seq += 1
        record: Record = {"seq": self.seq, "ts": iso_now(), "type": type, **fields}
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        os.write(self._fd, line.encode())
        return record

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_lines(data: bytes) -> Iterator[Record]:
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            continue  # a torn last line from a killed writer: skip, never fail a reader
        if isinstance(record, dict):
            yield record


def read_records(path: str | os.PathLike[str], after_seq: int = 0) -> list[Record]:
    """Every complete record with ``seq > after_seq``; a missing file is empty."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return [r for r in _parse_lines(data) if int(r.get("seq", 0)) > after_seq]


def last_record(path: str | os.PathLike[str]) -> Record | None:
    """The last complete record, read from the end of the file."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            chunk = 4096
            while True:
                start = max(0, size - chunk)
                f.seek(start)
                data = f.read(size - start)
                records = list(_parse_lines(data if start == 0 else data.split(b"\n", 1)[-1]))
                if records or start == 0:
                    return records[-1] if records else None
                chunk *= 4
    except FileNotFoundError:
        return None


def ensure_terminal(path: str | os.PathLike[str], message: str) -> Record | None:
    """After a runner has been reaped: if its log does not end in a terminal
    record, append an ``error`` with ``message`` so every follower ends.
    Returns the record written, or None if the log was already closed."""
    last = last_record(path)
    if last is not None and is_terminal(last):
        return None
    with LogWriter(path) as writer:
        return writer.append("error", message=message)


def split_turns(records: list[Record]) -> list[list[Record]]:
    """Group a chat log into turns, each ending at a terminal record (the last
    one may still be open)."""
    turns: list[list[Record]] = []
    current: list[Record] = []
    for record in records:
        current.append(record)
        if is_terminal(record):
            turns.append(current)
            current = []
    if current:
        turns.append(current)
    return turns


class LogCursor:
    """Reads a growing log incrementally: each ``read_new`` returns the complete
    records appended since the last call, keeping a torn tail for next time."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.offset = 0
        self._partial = b""

    def read_new(self) -> list[Record]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        if not data:
            return []
        self.offset += len(data)
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        return list(_parse_lines(data[:cut]))
