"""Run and chat records in the board, so that on PostgreSQL any web node
streams, replays and resumes any run or chat turn, wherever it ran.

A runner writes its records to a JSONL log on its own host
(:mod:`crewboard.sessionlog`). On PostgreSQL the process that launched it —
the supervisor for a job's run, the web process for a chat turn — ships
them into the ``log_record`` table as they are written, through one
:class:`Shipper` per run or turn: it reads what the log gained every
:data:`SHIP_EVERY_S` and stores it in one statement and one transaction,
which also notifies :data:`crewboard.board.notify.RECORDS` with the log's key,
so followers on every node wake. A run's or turn's terminal record is
shipped before its end is recorded, so recovery on another host decides
from the board (:func:`last_record`), never from a file it cannot read.
Records written after a run's (or turn's) terminal record are never
shipped.

On SQLite there is one host: nothing is shipped, and readers tail the files.

A log is named by its key: ``run:<run id>`` or ``chat:<session id>``
(:func:`log_key` reads it from the log's path). Its rows belong to the run
or session: deleting either deletes them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import trio

from crewboard.board import db, notify
from crewboard.board.db import write
from crewboard.clock import iso_now
from crewboard.sessionlog import LogCursor, LogWriter, Record, is_terminal

log = logging.getLogger(__name__)

# How often a shipper looks whether its log grew: a record reaches other
# nodes this much later at most, plus one board round trip.
SHIP_EVERY_S = 0.01
# The most records one statement inserts, and one read returns.
BATCH_RECORDS = 500
# The pause after a failed shipment before the next try.
RETRY_S = 0.5

_KINDS = {"runs": "run", "chat": "chat"}


def enabled() -> bool:
    """Whether records are shipped into the board (it is on PostgreSQL)."""
    return notify.enabled()


def run_key(run_id: int) -> str:
    return f"run:{run_id}"


def chat_key(session_id: int) -> str:
    return f"chat:{session_id}"


def log_key(path: str | os.PathLike[str]) -> str | None:
    """The key of the log at ``path`` (a home's ``logs/runs/<id>.jsonl`` or
    ``logs/chat/<id>.jsonl``), or None for any other file."""
    p = Path(path)
    kind = _KINDS.get(p.parent.name)
    if kind is None or p.suffix != ".jsonl" or not p.stem.isdigit():
        return None
    return f"{kind}:{int(p.stem)}"


def _owner(key: str) -> tuple[int | None, int | None]:
    """``(run_id, session_id)`` owning the log ``key``."""
    kind, _, ident = key.partition(":")
    return (int(ident), None) if kind == "run" else (None, int(ident))


def _dumps(record: Record) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


@write
def store(key: str, records: list[Record]) -> None:
    """Insert ``records`` of the log ``key`` (each with its effective seq),
    one statement per :data:`BATCH_RECORDS`, in one transaction that wakes
    the log's followers. A record already stored is left as it is."""
    run_id, session_id = _owner(key)
    for start in range(0, len(records), BATCH_RECORDS):
        chunk = records[start : start + BATCH_RECORDS]
        values = ",".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
        params: list[object] = []
        for record in chunk:
            params.extend((key, int(record["seq"]), run_id, session_id, _dumps(record)))
        db.database.execute_sql(
            'INSERT INTO "log_record" ("log_key", "seq", "run_id", "session_id", "body") '
            f"VALUES {values} ON CONFLICT DO NOTHING",
            params,
        )
    notify.notify(notify.RECORDS, key)


def read(key: str, after_seq: int = 0, limit: int = BATCH_RECORDS) -> list[Record]:
    """The stored records of the log ``key`` with seq above ``after_seq``, in
    order, at most ``limit`` of them."""
    cursor = db.database.execute_sql(
        'SELECT "body" FROM "log_record" WHERE "log_key" = %s AND "seq" > %s '
        'ORDER BY "seq" LIMIT %s',
        (key, after_seq, limit),
    )
    return [json.loads(body) for (body,) in cursor.fetchall()]


def read_all(key: str, after_seq: int = 0) -> list[Record]:
    """Every stored record of the log ``key`` with seq above ``after_seq``."""
    records: list[Record] = []
    while batch := read(key, after_seq):
        records.extend(batch)
        after_seq = int(batch[-1]["seq"])
    return records


def last_record(key: str) -> Record | None:
    """The stored log's last record, None if nothing was stored."""
    cursor = db.database.execute_sql(
        'SELECT "body" FROM "log_record" WHERE "log_key" = %s ORDER BY "seq" DESC LIMIT 1',
        (key,),
    )
    row = cursor.fetchone()
    return json.loads(row[0]) if row else None


def last_seq(key: str) -> int:
    cursor = db.database.execute_sql(
        'SELECT MAX("seq") FROM "log_record" WHERE "log_key" = %s', (key,)
    )
    row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def ensure_terminal(key: str, message: str) -> Record | None:
    """The board's copy of :func:`crewboard.sessionlog.ensure_terminal`, for a run
    closed by a peer on another host: if the stored log does not end in a
    terminal record, store an ``error`` with ``message`` after its last one,
    so every node's followers end. Returns the record stored, or None."""
    last = last_record(key)
    if last is not None and is_terminal(last):
        return None
    record: Record = {
        "seq": int(last["seq"]) + 1 if last else 1,
        "ts": iso_now(),
        "type": "error",
        "message": message,
    }
    store(key, [record])
    return record


def final_from_pending(pending: Record) -> Record:
    """The ``final_result`` a runner's ``result_pending`` record stands for
    (``runner/settle.py``): the same fields, the next seq, written now."""
    return {
        **pending,
        "seq": int(pending["seq"]) + 1,
        "ts": iso_now(),
        "type": "final_result",
    }


def ensure_final(key: str, pending: Record) -> Record | None:
    """For a run closed by a peer whose stored log ends in its pending result:
    store the ``final_result`` built from it, so every node's followers end
    with the run's result. Returns the record stored, or None if the log
    had moved on."""
    last = last_record(key)
    if last is None or last.get("seq") != pending.get("seq"):
        return None
    record = final_from_pending(pending)
    store(key, [record])
    return record


def store_missing(key: str, records: list[Record]) -> None:
    """Store whichever of a log's ``records`` (read whole from its file) the
    board lacks beyond its last stored one: earlier chat turns closed
    while nothing shipped them (an interrupted turn's ending)."""
    missing = [record for record in records if int(record["seq"]) > last_seq(key)]
    if missing:
        store(key, missing)


def restore_missing(key: str, path: str | os.PathLike[str]) -> None:
    """Append to the local log at ``path`` the records the board has beyond
    its end: a chat session's earlier turns, run by another node, become
    this node's context and its seqs go on from theirs."""
    with LogWriter(path) as writer:
        for record in read_all(key, writer.seq):
            writer.append_record(record)


class Shipper:
    """Ships one run's or turn's records from its log file into the board:
    those with seq above ``after_seq``, up to and including the first
    terminal record, never one after it.

    :meth:`serve_shipping` ships as the log grows, until the terminal record
    is shipped or :meth:`stop`; the launching process calls
    :meth:`ship_new` once more after the reap (when the log has its terminal
    record) and before recording the end. A shipment that fails is kept and
    tried again with the next.

    With ``acknowledge`` (for a job runner that settles its result with the
    board, ``runner/settle.py``), each shipment :meth:`serve_shipping`
    commits is acknowledged: it is called with the highest seq shipped, on
    the serving task's thread."""

    def __init__(
        self,
        key: str,
        path: str | os.PathLike[str],
        after_seq: int = 0,
        acknowledge: Callable[[int], None] | None = None,
    ) -> None:
        self.key = key
        self.path = os.fspath(path)
        self.acknowledge = acknowledge
        self.shipped_seq = after_seq
        self.ended = False  # the terminal record is in the board
        self._cursor = LogCursor(path)
        self._pending: list[Record] = []
        # The serving task and the final shipment may overlap on two threads.
        self._lock = threading.Lock()
        self._scope = trio.CancelScope()

    @classmethod
    def for_run(
        cls,
        run_id: int,
        path: str | os.PathLike[str],
        acknowledge: Callable[[int], None] | None = None,
    ) -> Shipper | None:
        """A run's shipper on PostgreSQL; None on SQLite."""
        return cls(run_key(run_id), path, acknowledge=acknowledge) if enabled() else None

    def ship_new(self) -> int:
        """On a worker thread: store what the log gained since the last
        shipment, in one transaction. Returns how many records were stored.
        Board errors propagate; the records are kept for the next try."""
        with self._lock:
            if self.ended:
                return 0
            self._pending.extend(
                record
                for record in self._cursor.read_new()
                if int(record["seq"]) > self.shipped_seq
            )
            ends = next((i for i, r in enumerate(self._pending) if is_terminal(r)), None)
            if ends is not None:
                del self._pending[ends + 1 :]
            if not self._pending:
                return 0
            store(self.key, self._pending)
            count = len(self._pending)
            self.shipped_seq = int(self._pending[-1]["seq"])
            self.ended = ends is not None
            self._pending = []
            self._cursor.report()
            return count

    def ship_rest(self) -> int:
        """:meth:`ship_new` once the runner is reaped, before its end is
        recorded. A transient board error propagates (recording the end
        would fail too, and is retried with it); any other is logged, so
        that records the board refuses never keep a run from ending."""
        try:
            return self.ship_new()
        except Exception as exc:
            if db.is_transient_error(exc):
                raise
            log.exception("could not ship the last records of %s", self.key)
            return 0

    def _has_news(self) -> bool:
        if self._pending:
            return True
        try:
            return os.stat(self.path).st_size > self._cursor.offset
        except FileNotFoundError:
            return False

    async def serve_shipping(self) -> None:
        """Ship as the log grows, until the terminal record is shipped or
        :meth:`stop` is called."""
        failures = 0
        with self._scope:
            while not self.ended:
                await trio.sleep(SHIP_EVERY_S if not failures else RETRY_S)
                if not self._has_news():
                    continue
                try:
                    shipped = await db.call(self.ship_new)
                except Exception as exc:
                    failures += 1
                    if failures & (failures - 1) == 0:  # 1st, 2nd, 4th… failure
                        log.warning("could not ship the records of %s (%s)", self.key, exc)
                    continue
                failures = 0
                if shipped and self.acknowledge is not None:
                    self.acknowledge(self.shipped_seq)

    def stop(self) -> None:
        """End :meth:`serve_shipping` (its run or turn is over)."""
        self._scope.cancel()
