"""``crewboard backup`` under load and ``crewboard restore`` on a fresh home:
every job the copy of the board calls done comes back with its result, log
and artifact; the key keeps its mode; a restore refuses a home in use."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trio

from crewboard import backup
from crewboard.board import db
from crewboard.board.models import Job, JobStatus, Run, RunOutcome
from crewboard.bootstrap import open_home
from crewboard.cli import build_parser
from crewboard.errors import CrewboardError
from crewboard.home import Home
from tests.conftest import TEST_SETTINGS, make_config
from tests.support import crews
from tests.support.supervisor import supervising, wait_for

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board

JOBS = 40


def run_cli(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return args.fn(args)


def done_count() -> int:
    return Job.select().where(Job.status == JobStatus.DONE).count()


def done_jobs_with_their_files(home: Home) -> list[tuple[int, str | None, bool, bool]]:
    """(job id, result, whether its run's log and artifact are in the home)
    for every done job of the open board."""
    found = []
    for job in Job.select().where(Job.status == JobStatus.DONE).order_by(Job.id):
        run = (
            Run.select()
            .where((Run.job == job.id) & (Run.outcome == RunOutcome.SUCCEEDED))
            .order_by(Run.id.desc())
            .first()
        )
        assert run is not None, f"done job {job.id} has no succeeded run"
        artifact = home.artifact_dir(run.id) / (run.artifact or "missing")
        found.append((job.id, job.result, home.run_log(run.id).is_file(), artifact.is_file()))
    return found


@pytest.fixture
def env(monkeypatch):
    for key, value in TEST_SETTINGS.items():
        monkeypatch.setenv(key, value)


@pytest.mark.sqlite_only("crewboard backup copies board.db; PostgreSQL is backed up with pg_dump")
async def test_a_backup_taken_under_load_restores_every_done_job(tmp_path: Path, env) -> None:
    config = make_config(tmp_path / "home", concurrency=3)
    home = open_home(config)
    dest = tmp_path / "backup"
    restored = Home(tmp_path / "restored")
    key = home.secret_key()
    try:
        ids = [
            crews.add_job(f"/sleep 0.05\nJob {i}: say something.", artifact=f"out-{i}.md")
            for i in range(JOBS)
        ]
        async with supervising(config):
            await wait_for(lambda: done_count() >= 5, 60, "a few jobs done")
            done_before = await db.call(done_count)
            copied = await trio.to_thread.run_sync(backup.backup_home, home, dest)
            done_after = await db.call(done_count)
            # It was taken while the supervisor ran jobs.
            assert done_after < JOBS, "the backup did not overlap the load"
            # A restore into a home in use is refused, even with --force.
            with pytest.raises(CrewboardError, match="supervisor"):
                run_cli("restore", str(dest), "--home", str(config.home), "--force")
            await wait_for(lambda: done_count() == JOBS, 120, "every job done")
        assert copied.board and copied.files >= done_before
    finally:
        db.close()

    assert stat.S_IMODE((dest / "secret_key").stat().st_mode) == 0o600
    assert run_cli("restore", str(dest), "--home", str(restored.root)) == 0
    assert restored.secret_key() == key
    assert stat.S_IMODE(restored.secret_key_file.stat().st_mode) == 0o600

    db.connect(restored.board_db)
    try:
        found = done_jobs_with_their_files(restored)
        assert done_before <= len(found) <= done_after
        for job_id, result, has_log, has_artifact in found:
            assert result, f"job {job_id} lost its result"
            assert has_log and has_artifact, f"job {job_id}: log {has_log}, artifact {has_artifact}"
        # The restored home runs: its supervisor recovers what was running and
        # finishes the rest.
        restored_config = make_config(restored.root, concurrency=3)
        async with supervising(restored_config):
            await wait_for(lambda: done_count() == JOBS, 120, "the restored board to finish")
        assert {job.id for job in Job.select()} == set(ids)
    finally:
        db.close()


@pytest.mark.sqlite_only("crewboard restore writes board.db; PostgreSQL restores with pg_restore")
def test_restore_wants_an_empty_home_or_force(tmp_path: Path, config, home, env) -> None:
    crews.add_job("Keep me.", extra={"status": JobStatus.DONE, "result": "kept"})
    db.close()
    dest = tmp_path / "copy"
    assert run_cli("backup", str(dest), "--home", str(config.home)) == 0
    other = Home(tmp_path / "other").ensure()
    other.secret_key()
    with pytest.raises(CrewboardError, match="not empty"):
        run_cli("restore", str(dest), "--home", str(other.root))
    assert run_cli("restore", str(dest), "--home", str(other.root), "--force") == 0
    assert other.secret_key() == home.secret_key()
    db.connect(other.board_db)
    assert [job.result for job in Job.select()] == ["kept"]


def test_backup_refuses_a_used_destination_and_restore_a_non_backup(
    tmp_path: Path, config, home, env
) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "something").write_text("x")
    with pytest.raises(CrewboardError, match="not an empty folder"):
        run_cli("backup", str(used), "--home", str(config.home))
    with pytest.raises(CrewboardError, match="not a crewboard backup"):
        run_cli("restore", str(used), "--home", str(tmp_path / "fresh"))
    # No half-made backup is left behind.
    assert sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name) == []


def test_a_backup_holds_the_shared_key_the_web_signs_with(
    tmp_path: Path, env, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tmp_path / "home")
    home = open_home(config)
    db.close()
    # The key every web node shares, on a secrets mount outside the home
    # (reached through a link, as mounted secrets often are).
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "key.v2").write_bytes(os.urandom(48).hex().encode())
    (secrets / "key.v2").chmod(0o600)
    (secrets / "crewboard.key").symlink_to("key.v2")
    shared = (secrets / "key.v2").read_bytes()
    monkeypatch.setenv("CREWBOARD_SECRET_KEY_FILE", str(secrets / "crewboard.key"))
    if config.database_url:
        monkeypatch.setenv("CREWBOARD_DATABASE_URL", config.database_url)
    dest = tmp_path / "backup"
    assert run_cli("backup", str(dest), "--home", str(home.root)) == 0
    assert (dest / "secret_key").read_bytes() == shared != home.secret_key()
    assert stat.S_IMODE((dest / "secret_key").stat().st_mode) == 0o600
    assert backup.read_manifest(dest)["secretKey"] == "CREWBOARD_SECRET_KEY_FILE"
    # Restored on a host without the mount, the home signs with that key.
    restored = Home(tmp_path / "restored")
    monkeypatch.delenv("CREWBOARD_SECRET_KEY_FILE")
    assert run_cli("restore", str(dest), "--home", str(restored.root)) == 0
    assert restored.secret_key() == shared
