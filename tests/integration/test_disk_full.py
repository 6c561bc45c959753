"""A real full disk under the home: the home lives on a small tmpfs mounted
for the test, filled with a ballast file until both the file system and the
board refuse to write. Creating a job then answers 507 with the error shape,
writing nothing, and the access log says why; a run ending meanwhile is not
lost: its end is retried until space is freed, then recorded once. Needs
the right to mount (root, or a user namespace); skipped with the reason where
there is none."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import trio

from crewboard import sessionlog
from crewboard.board import db
from crewboard.board.models import Crew, Event, Job, JobStatus, RunOutcome, User
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.supervisor import launcher
from tests.conftest import make_config
from tests.support import crews, need
from tests.support.supervisor import supervising, wait_for

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board

DISK_BYTES = 16 * 1024 * 1024

T = TypeVar("T")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh tmpfs of :data:`DISK_BYTES` mounted on a folder of the test's."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    need(
        mounted.returncode == 0,
        f"mounting a tmpfs is not permitted here: {mounted.stderr.strip() or mounted.returncode}",
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=True)


@pytest.fixture
def config(small_disk: Path) -> Config:
    return make_config(small_disk / "home")


@db.write
def _ballast_write(n: int) -> None:
    User.update(name=f"ballast {n} " + "x" * 2000).where(
        User.email == "ballast@example.test"
    ).execute()


def fill(disk: Path) -> Path:
    """Fill ``disk`` to its last byte with a ballast file, then write to the
    board until it too is refused for lack of space (what room its files had
    left is used up). Returns the ballast, whose removal frees the space."""
    ballast = disk / "ballast"
    with ballast.open("wb", buffering=0) as f:
        for size in (1024 * 1024, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)
    with pytest.raises(OSError) as full:
        (disk / "one more").write_bytes(b"\0" * 8192)
    assert full.value.errno == errno.ENOSPC
    for n in range(10_000):
        try:
            _ballast_write(n)
        except Exception as exc:
            assert db.is_disk_full(exc), exc
            return ballast
    raise AssertionError("the board never ran out of space")


def add_ballast_user() -> None:
    User.create(email="ballast@example.test", name="ballast", created_at=utcnow())


async def ask(client, question: str):
    return await client.post(
        "/api/jobs", json={"templateId": "ask", "inputs": {"question": question}}
    )


@pytest.mark.sqlite_only("fills the disk board.db is on")
async def test_a_write_refused_for_lack_of_space_is_507_and_writes_nothing(
    as_alice, small_disk: Path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="crewboard.access")
    add_ballast_user()
    assert (await ask(as_alice, "before")).status_code == 201
    before = (Crew.select().count(), Job.select().count(), Event.select().count())
    ballast = await _in_thread(fill, small_disk)

    response = await ask(as_alice, "while the disk is full")
    assert response.status_code == 507, response.text
    body = response.json()
    assert body["error"]["code"] == "insufficient_storage" and body["error"]["details"] == {}
    assert "nothing was written" in body["error"]["message"]
    # Nothing half-written: no crew, no job, no event.
    assert (Crew.select().count(), Job.select().count(), Event.select().count()) == before
    # Reading still works, and the access log says why the write failed.
    assert (await as_alice.get("/api/jobs")).status_code == 200
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "crewboard.access"]
    refused = [entry for entry in lines if entry["status"] == 507]
    assert len(refused) == 1 and refused[0]["path"] == "/api/jobs"
    assert refused[0]["error"].startswith("insufficient_storage: ")
    assert "full" in refused[0]["error"]

    ballast.unlink()
    response = await ask(as_alice, "once space is freed")
    assert response.status_code == 201, response.text
    assert Job.select().count() == before[1] + 1


@pytest.mark.sqlite_only("fills the disk board.db is on")
async def test_a_run_ending_on_a_full_disk_is_recorded_once_space_is_freed(
    config: Config, home, small_disk: Path, caplog, monkeypatch
) -> None:
    monkeypatch.setattr(launcher, "RECORD_RETRY_CAP_S", 0.5)
    caplog.set_level(logging.WARNING, logger="crewboard.supervisor")
    add_ballast_user()
    job_id = crews.add_job("/sleep 2\nThen answer.", retries=2)
    async with supervising(config):
        run = await wait_for(
            lambda: next((r for r in crews.runs(job_id) if r.outcome == RunOutcome.RUNNING), None),
            what="the run started",
        )
        ballast = await _in_thread(fill, small_disk)

        def failed_to_record(times: int):
            said = f"could not record the end of run {run.id}"
            return lambda: any(
                said in r.getMessage() and f"(failure {times}," in r.getMessage()
                for r in caplog.records
            )

        await wait_for(failed_to_record(1), timeout_s=20, what="recording the end failing")
        await wait_for(failed_to_record(2), timeout_s=5, what="recording the end retried")
        # The runner is gone and its end unwritten: the run stays live on the
        # board, in the launcher's hands (so no reaper takes it), not dropped.
        assert crews.runs(job_id)[0].outcome == RunOutcome.RUNNING
        assert crews.job(job_id).status == JobStatus.RUNNING

        ballast.unlink()
        await wait_for(
            lambda: crews.runs(job_id)[0].outcome != RunOutcome.RUNNING,
            timeout_s=15,
            what="the end of the run recorded",
        )
    ended = crews.runs(job_id)[0]
    assert ended.ended_at is not None
    events = Event.select().where((Event.job == job_id) & (Event.kind == "run_ended"))
    assert [e.data["runId"] for e in events].count(ended.id) == 1
    last = sessionlog.last_record(ended.log_path)
    assert last is not None and sessionlog.is_terminal(last)
    # Retried as a passing condition, never given up on as a failure.
    gave_up = [
        r for r in caplog.records if r.name == launcher.__name__ and r.levelno >= logging.ERROR
    ]
    assert gave_up == []


async def _in_thread(fn: Callable[..., T], *args: object) -> T:
    return await trio.to_thread.run_sync(fn, *args)
