"""The JSONL session log: the single source of truth for a chat session or a job
run. Owns the record format, appending (runner and reaper), reading (replay,
results, recovery) and tailing (live SSE). Neutral ground: imported by the
runner, the supervisor and the web process alike, so it stays cheap to import
(trio is imported only by the async tail).

A record is one JSON object per line::

    {"seq": 4, "ts": "2026-11-28T21:00:00.000Z", "type": "text", ...}

``seq`` grows by one per record across the whole file (a chat log holds many
turns). A turn or run ends with exactly one terminal record: ``final_result``,
``blocked`` or ``error``. A turn starts with its ``user_message``.

Nothing written after a turn's terminal record belongs to it: a runner that
went on after its run was closed for it (its supervisor cut off, the run
rescued elsewhere) may append more. Every reader here drops the records after
a terminal record until the next turn's ``user_message`` (in a job run's log,
all of them): what a run said ends at its terminal record. They keep their
place in the numbering (seq), so resuming after seq N means the same to
every reader.

A log may be damaged — a writer killed mid-line, a full disk, an edit by
hand — and reading survives it:

- Every append starts on a line of its own: if the file does not end in
  ``"\n"`` (a torn last line), a ``"\n"`` is written first, in the same
  ``write(2)``, so the torn line stays one malformed line and never swallows
  the record after it (a terminal record above all).
- Readers skip malformed lines: torn, not UTF-8, not JSON, not a JSON object,
  or longer than :data:`MAX_RECORD_BYTES` (held back, never read into memory
  whole). Each reader says how many it skipped in one warning.
- A record's seq is its position among the well-formed records of the file:
  the first is 1, each one after is the previous one's + 1. The stored
  ``seq`` is only a check: where it is not that number (not an integer, a
  duplicate, a jump), readers hand the record on with its effective seq and
  count it in the same warning. So a bad seq can hide no later record, and a
  client resuming after seq N (``Last-Event-ID``) gets the records after the
  N-th, whichever reader it meets. Writers number the same way, so an
  undamaged log's stored seqs are its effective ones.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from crewboard.clock import iso_now

log = logging.getLogger(__name__)

TERMINAL_TYPES = frozenset({"final_result", "blocked", "error"})
# A job runner's final result written before the board holds it: a step
# record, followed by its ``final_result`` once the board has it
# (``runner/settle.py``). Clients show nothing for it.
RESULT_PENDING = "result_pending"
# The record a turn starts with (a job run is one turn).
TURN_START = "user_message"
# The longest line read as a record. Well above what a runner writes in one
# record (its output caps), so only damage reaches it; a longer line is skipped
# as malformed without ever being held whole.
MAX_RECORD_BYTES = 8 * 1024 * 1024
# How much of a file one read takes at a time.
READ_CHUNK_BYTES = 1024 * 1024

Record = dict[str, Any]


def is_terminal(record: Record) -> bool:
    return record.get("type") in TERMINAL_TYPES


def _ends_in_newline(fd: int) -> bool:
    """Whether the file open on ``fd`` (for reading too) is empty or ends in "\n"."""
    size = os.fstat(fd).st_size
    return size == 0 or os.pread(fd, 1, size - 1) == b"\n"


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``: a short write (a disk filling up) is continued,
    and an error raised; readers skip a line it left torn."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class LogWriter:
    """Appends records to one log file, one ``write(2)`` per record so a reader
    never sees half a line from a live writer, and every record is on disk
    (in the page cache) before ``append`` returns. Records are numbered on
    from the file's last well-formed record (see the module docstring); a
    record starts on a line of its own even after a torn last line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        self.seq = last_seq(self.path)

    def append(self, type: str, **fields: Any) -> Record:
        """Write one record; OSError (ENOSPC, EIO…) if it could not be, the
        seq then not used up."""
        return self.append_record({"ts": iso_now(), "type": type, **fields})

    def append_record(self, record: Record) -> Record:
        """Write a whole record as it is (a copy of one written on another
        host), numbered on like :meth:`append`'s."""
        # The seq first, as every record has it.
        record = {"seq": 0, **record}
        record["seq"] = self.seq + 1
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        if not _ends_in_newline(self._fd):
            line = b"\n" + line
        _write_all(self._fd, line)
        self.seq += 1
        return record

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Reading:
    """Reading one log from its start: splits the bytes into lines as they
    come (holding at most :data:`MAX_RECORD_BYTES` of a line), parses them,
    numbers the well-formed records and counts the damage."""

    seq: int = 0  # the effective seq of the last well-formed record
    skipped: int = 0  # malformed lines
    renumbered: int = 0  # records whose stored seq was not their effective one
    dropped: int = 0  # records after a terminal record, before the next turn
    _ended: bool = False  # past a terminal record, no turn started since
    _partial: bytes = b""
    _overlong: bool = False  # dropping the rest of a line that is too long
    _reported: tuple[int, int] = field(default=(0, 0))

    def feed(self, data: bytes) -> list[Record]:
        """The records completed by ``data`` (read on from the last feed)."""
        *lines, tail = data.split(b"\n")
        records = []
        for i, line in enumerate(lines):
            if i == 0:
                line, overlong = self._partial + line, self._overlong
                self._partial, self._overlong = b"", False
                if overlong:
                    self.skipped += 1
                    continue
            record = self._take(line)
            if record is not None:
                records.append(record)
        if not self._overlong:
            self._partial += tail
            if len(self._partial) > MAX_RECORD_BYTES:
                self._partial, self._overlong = b"", True
        return records

    def pending(self) -> Record | None:
        """At the end of the file: its last line, numbered next, if it is a
        whole record still missing its newline (the line stays pending, in
        case the writer is still at it), whether or not it is shown."""
        if self._overlong or not self._partial.strip():
            return None
        record = _parse(self._partial)
        if record is None:
            return None  # torn: counted once a line of its own follows it
        return {**record, "seq": self.seq + 1}

    def unterminated(self) -> Record | None:
        """:meth:`pending`, if it is shown (see the module docstring)."""
        record = self.pending()
        if record is None or (self._ended and record.get("type") != TURN_START):
            return None
        return record

    def _take(self, line: bytes) -> Record | None:
        if not line.strip():
            return None
        record = _parse(line) if len(line) <= MAX_RECORD_BYTES else None
        if record is None:
            self.skipped += 1
            return None
        return self._shown(self._number(record))

    def _shown(self, record: Record) -> Record | None:
        """The record, unless it follows its turn's terminal record."""
        kind = record.get("type")
        if kind == TURN_START:
            self._ended = False
        elif self._ended:
            self.dropped += 1
            return None
        if kind in TERMINAL_TYPES:
            self._ended = True
        return record

    def _number(self, record: Record) -> Record:
        self.seq += 1
        stored = record.get("seq")
        if type(stored) is not int or stored != self.seq:
            record["seq"] = self.seq
            self.renumbered += 1
        return record

    def report(self, path: str | os.PathLike[str]) -> None:
        """One warning for the damage found since the last report, if any."""
        if (self.skipped, self.renumbered) == self._reported:
            return
        skipped = self.skipped - self._reported[0]
        renumbered = self.renumbered - self._reported[1]
        self._reported = (self.skipped, self.renumbered)
        log.warning(
            "session log %s is damaged: skipped %d malformed line(s), renumbered %d "
            "record(s) whose seq was out of order",
            os.fspath(path),
            skipped,
            renumbered,
        )


def _parse(line: bytes) -> Record | None:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None  # torn, not UTF-8, not JSON
    return record if isinstance(record, dict) else None


def read_records(path: str | os.PathLike[str], after_seq: int = 0) -> list[Record]:
    """Every well-formed record with an effective seq above ``after_seq``
    (see the module docstring); a missing file is empty."""
    reading = _Reading()
    records: list[Record] = []
    try:
        with open(path, "rb") as f:
            while chunk := f.read(READ_CHUNK_BYTES):
                records.extend(reading.feed(chunk))
    except FileNotFoundError:
        return []
    last = reading.unterminated()
    if last is not None:
        records.append(last)
    reading.report(path)
    return [record for record in records if record["seq"] > after_seq]


@dataclass
class _Scanned:
    """How far :func:`last_record` has read one file, to read on from there."""

    ino: int
    offset: int = 0
    reading: _Reading = field(default_factory=_Reading)
    last: Record | None = None
    # The bytes just before ``offset``: a file rewritten in place (not
    # appended to) no longer has them there, and is read again from its start.
    seen: bytes = b""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def still_valid(self, fd: int, size: int) -> bool:
        if self.offset > size:
            return False
        return not self.seen or os.pread(fd, len(self.seen), self.offset - len(self.seen)) == (
            self.seen
        )


# The files last_record read lately: logs only grow, so a call reads only what
# was appended since the last one (a stream's start, a run's end).
_scanned: OrderedDict[str, _Scanned] = OrderedDict()
_scanned_lock = threading.Lock()
_SCANNED_FILES = 64


def _scanned_for(key: str, fd: int) -> _Scanned:
    st = os.fstat(fd)
    with _scanned_lock:
        scanned = _scanned.get(key)
        if scanned is None or scanned.ino != st.st_ino or not scanned.still_valid(fd, st.st_size):
            scanned = _scanned[key] = _Scanned(st.st_ino)
        _scanned.move_to_end(key)
        while len(_scanned) > _SCANNED_FILES:
            _scanned.popitem(last=False)
        return scanned


def last_record(path: str | os.PathLike[str]) -> Record | None:
    """The last record shown (a run's terminal record once it has one; see
    the module docstring), with its effective seq; None for a missing or
    empty log."""
    key = os.path.abspath(path)
    try:
        with open(key, "rb") as f:
            last, _ = _read_on(key, f)
    except FileNotFoundError:
        return None
    return dict(last) if last is not None else None


def last_seq(path: str | os.PathLike[str]) -> int:
    """The effective seq of the log's last well-formed record, shown or not
    (0 for a missing or empty log): a writer numbers on from it."""
    key = os.path.abspath(path)
    try:
        with open(key, "rb") as f:
            _, seq = _read_on(key, f)
    except FileNotFoundError:
        return 0
    return seq


def _read_on(key: str, f: BinaryIO) -> tuple[Record | None, int]:
    """The last record shown, and the last well-formed record's seq."""
    scanned = _scanned_for(key, f.fileno())
    with scanned.lock:
        f.seek(scanned.offset)
        while chunk := f.read(READ_CHUNK_BYTES):
            scanned.offset += len(chunk)
            scanned.seen = (scanned.seen + chunk)[-64:]
            records = scanned.reading.feed(chunk)
            if records:
                scanned.last = records[-1]
        scanned.reading.report(key)
        pending = scanned.reading.pending()
        seq = pending["seq"] if pending is not None else scanned.reading.seq
        return scanned.reading.unterminated() or scanned.last, seq


def ensure_terminal(path: str | os.PathLike[str], message: str) -> Record | None:
    """After a runner has been reaped: if its log does not end in a terminal
    record, append an ``error`` with ``message`` so every follower ends (on
    a line of its own, after a torn last line too). Returns the record
    written, or None if the log was already closed."""
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
    records appended since the last call (at most ``max_bytes`` of the file
    at a time), keeping a torn tail for next time. Records carry their
    effective seq, as :func:`read_records` gives them; ``skipped`` and
    ``renumbered`` count the damage met so far, and :meth:`report` logs it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.offset = 0
        self._reading = _Reading()

    @property
    def skipped(self) -> int:
        return self._reading.skipped

    @property
    def renumbered(self) -> int:
        return self._reading.renumbered

    def read_new(self, max_bytes: int = 2 * MAX_RECORD_BYTES) -> list[Record]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(max_bytes)
        except FileNotFoundError:
            return []
        if not data:
            return []
        self.offset += len(data)
        return self._reading.feed(data)

    def report(self) -> None:
        """One warning for the damage met since the last report, if any."""
        self._reading.report(self.path)
