"""Runs' saved files kept in the board, so that every web node serves them.

On SQLite the board and the home are on one host: a run's files stay in its
home's artifact folder and the web reads them there, as it always has.

On PostgreSQL several hosts share the board while each keeps its own home,
so a web node cannot read the folder of a run that ran elsewhere. When a run
ends, its supervisor copies each file the run saved into the ``run_artifact``
table (a ``bytea`` per file) before it closes the run; the web then serves
the file from there, on any node, a slice at a time.

Why ``bytea`` in PostgreSQL rather than large objects or an object store: it
needs no other service to run, back up or secure; a row goes with its run by
``ON DELETE CASCADE`` (large objects would need their own clean-up); and with
the column stored uncompressed out of line (``STORAGE EXTERNAL``, see
migration 7) ``substring`` reads a slice without reading the whole value. The
price is that a value is written whole, so files are capped
(``CREWBOARD_ARTIFACT_MAX_BYTES``, 64 MiB by default): a larger file stays
only in its host's home, and the job's timeline says so with an
``artifact_not_stored`` event.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import peewee

from crewboard.board import db
from crewboard.board.db import write
from crewboard.board.events import EventKind, record_event
from crewboard.board.job_views import CHUNK
from crewboard.board.models import Job, Run, RunArtifact

SUPERVISOR = "supervisor"
# The longest name kept (runs name their files with at most 128 characters).
MAX_NAME = 255


@dataclass(frozen=True)
class StoredFile:
    """One file in a run's artifact folder, as the end of the run found it."""

    name: str
    size: int


def kept_in_board() -> bool:
    """Whether runs' files are kept in the board (a PostgreSQL board)."""
    return not db.is_sqlite()


def _storable_name(name: str) -> bool:
    if not name or len(name) > MAX_NAME or name.startswith("."):
        return False
    if any(ch in name for ch in "/\\") or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a name on disk that is not text
        return False
    return True


def saved_files(folder: Path) -> list[StoredFile]:
    """The regular files directly in ``folder`` (no symlinks, no folders),
    by name; none when it does not exist."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    found = []
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            found.append(StoredFile(entry.name, info.st_size))
    return sorted(found, key=lambda f: f.name)


def _read(folder: Path, name: str) -> bytes:
    fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def store_run_artifacts(run_id: int, folder: Path, *, max_bytes: int, now: datetime) -> list[str]:
    """Copy the files a run saved in ``folder`` into the board, replacing
    what an earlier try stored (so a retried run end stores them once).
    A file over ``max_bytes``, one whose name cannot be kept, or one that
    cannot be read is left out, with an ``artifact_not_stored`` event on the
    job naming it and why. Returns the names left out. Does nothing (and
    opens no transaction) on SQLite, or when the run saved nothing."""
    if not kept_in_board():
        return []
    files = saved_files(folder)
    if not files:
        return []
    return _store(run_id, folder, files, max_bytes=max_bytes, now=now)


@write
def _store(
    run_id: int, folder: Path, files: list[StoredFile], *, max_bytes: int, now: datetime
) -> list[str]:
    run = Run.select(Run.id, Run.job).where(Run.id == run_id).get_or_none()
    if run is None:
        return []
    RunArtifact.delete().where(RunArtifact.run == run_id).execute()
    left_out: list[str] = []
    for file in files:
        reason = _why_not_stored(file, max_bytes)
        if reason is None:
            try:
                data = _read(folder, file.name)
            except OSError as exc:
                reason = f"it could not be read ({exc.strerror})"
            else:
                RunArtifact.create(
                    run=run_id, name=file.name, size=len(data), data=data, created_at=now
                )
                continue
        left_out.append(file.name)
        _record_left_out(run.job_id, run_id, file, reason, now=now)
    return left_out


def _why_not_stored(file: StoredFile, max_bytes: int) -> str | None:
    if not _storable_name(file.name):
        return "its name cannot be kept"
    if file.size > max_bytes:
        return (
            f"it is {_mib(file.size)}, over the {_mib(max_bytes)} limit "
            "(CREWBOARD_ARTIFACT_MAX_BYTES)"
        )
    return None


def _record_left_out(job_id: int, run_id: int, file: StoredFile, reason: str, *, now: datetime):
    job = Job.get_by_id(job_id)
    shown = file.name.encode("utf-8", "backslashreplace").decode("utf-8")
    record_event(
        EventKind.ARTIFACT_NOT_STORED,
        job=job,
        actor=SUPERVISOR,
        message=(
            f"The file {shown!r} was not stored on the board: {reason}. "
            "Only the host that ran it can serve it."
        ),
        data={"runId": run_id, "name": shown, "size": file.size},
        now=now,
    )


def stored_files(run_ids: list[int]) -> dict[int, list[StoredFile]]:
    """The files kept in the board for each of ``run_ids`` that has any."""
    if not kept_in_board() or not run_ids:
        return {}
    found: dict[int, list[StoredFile]] = {}
    for start in range(0, len(run_ids), CHUNK):
        chunk = run_ids[start : start + CHUNK]
        query = (
            RunArtifact.select(RunArtifact.run, RunArtifact.name, RunArtifact.size)
            .where(RunArtifact.run.in_(chunk))
            .order_by(RunArtifact.run, RunArtifact.name)
        )
        for row in query:
            found.setdefault(row.run_id, []).append(StoredFile(row.name, row.size))
    return found


def read_slice(run_id: int, name: str, offset: int, length: int) -> bytes:
    """Up to ``length`` bytes of a kept file from ``offset`` (empty past its
    end, or when it is gone)."""
    row = (
        RunArtifact.select(peewee.fn.substring(RunArtifact.data, offset + 1, length).alias("part"))
        .where((RunArtifact.run == run_id) & (RunArtifact.name == name))
        .tuples()
        .first()
    )
    return bytes(row[0]) if row and row[0] is not None else b""
