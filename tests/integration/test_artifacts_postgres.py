"""Two hosts on one PostgreSQL board: host A's supervisor runs the jobs, in
its own home; host B's web node, with another home, serves their saved files
from the board (same bytes and headers as A's files), and a delete or purge
made through B reaches A's disk through A's own sweep."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from crewboard.board import artifacts
from crewboard.board.models import ChatSession, Event, Job, JobStatus, Run, RunArtifact
from crewboard.board.sweep import sweep_home
from crewboard.bootstrap import open_home
from crewboard.cli import build_parser
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.home import Home
from tests.conftest import TEST_SETTINGS, add_user, make_config, signed_in
from tests.support import chat, crews, waits
from tests.support.crews import JobDef
from tests.support.supervisor import supervising, wait_for
from tests.support.web_nodes import web_node

pytestmark = pytest.mark.postgres

REPORT = """/artifact report.md
# Swallows

<script>alert('owned')</script>

| where | when |
|---|---|
| Africa | winter |
"""


@pytest.fixture
def hosts(pg, tmp_path) -> tuple[Config, Config]:
    """Host A (the ``pg`` home, where the supervisor runs) and host B (a web
    node with a home of its own), both on the one board."""
    config_a, _ = pg
    config_b = make_config(tmp_path / "home-b", database_url=config_a.database_url)
    open_home(config_b)
    return config_a, config_b


async def run_to_done(config: Config, prompt: str = REPORT, artifact: str = "report.md") -> int:
    job_id = crews.add_crew({"report": JobDef(prompt, agent="writer", artifact=artifact)})["report"]
    async with supervising(config):
        await wait_for(lambda: crews.job(job_id).status == JobStatus.DONE, what="done")
    return job_id


HEADERS = ("content-type", "content-length", "content-disposition", "content-security-policy")


async def fetch(base_url: str, account, job_id: int, **params: str):
    async with signed_in(base_url, account) as client:
        return await client.get(f"/api/jobs/{job_id}/artifact", params=params)


async def test_a_file_saved_on_host_a_is_served_alike_by_host_b(hosts) -> None:
    config_a, config_b = hosts
    admin = add_user(config_a, "admin@example.test", admin=True)
    job_id = await run_to_done(config_a)
    (run,) = crews.runs(job_id)
    on_a = Path(config_a.home, "artifacts", str(run.id), "report.md")
    assert on_a.is_file()
    assert not Path(config_b.home, "artifacts", str(run.id)).exists()
    served = {}
    async with web_node(config_a) as url_a, web_node(config_b) as url_b:
        for params in ({}, {"download": "1"}, {"format": "html"}):
            from_a = await fetch(url_a, admin, job_id, **params)
            from_b = await fetch(url_b, admin, job_id, **params)
            assert from_a.status_code == from_b.status_code == 200
            assert from_b.content == from_a.content
            for header in HEADERS:
                assert from_b.headers.get(header) == from_a.headers.get(header), header
            served[tuple(params)] = from_b
    assert served[()].content == on_a.read_bytes()
    assert b"| Africa | winter |" in served[()].content
    assert served[("download",)].headers["content-disposition"].startswith("attachment;")
    page = served[("format",)]
    assert page.headers["content-type"].startswith("text/html")
    assert "<table>" in page.text and "<script>" not in page.text


async def test_a_large_file_is_streamed_from_the_board_whole(hosts) -> None:
    config_a, config_b = hosts
    admin = add_user(config_a, "admin@example.test", admin=True)
    job_id = await run_to_done(config_a)
    (run,) = crews.runs(job_id)
    # Bytes of every value over several of the web's slices: stored as the
    # run's end would store a file the run saved.
    blob = os.urandom(3 * (1 << 20) + 12345)
    folder = Path(config_a.home, "artifacts", str(run.id))
    (folder / "report.md").unlink()
    (folder / "data.bin").write_bytes(blob)
    artifacts.store_run_artifacts(run.id, folder, max_bytes=64 << 20, now=utcnow())
    Job.update(artifact_name="data.bin").where(Job.id == job_id).execute()
    Run.update(artifact="data.bin").where(Run.id == run.id).execute()
    async with web_node(config_b) as url_b:
        response = await fetch(url_b, admin, job_id)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == str(len(blob))
    assert response.content == blob


async def test_a_file_over_the_cap_is_not_stored_and_the_job_says_why(hosts) -> None:
    config_a, config_b = hosts
    admin = add_user(config_a, "admin@example.test", admin=True)
    job_id = await run_to_done(dataclasses.replace(config_a, artifact_max_bytes=40))
    assert RunArtifact.select().count() == 0
    async with web_node(config_b) as url_b:
        missing = await fetch(url_b, admin, job_id)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        async with signed_in(url_b, admin) as client:
            detail = (await client.get(f"/api/jobs/{job_id}")).json()
    (event,) = [e for e in detail["events"] if e["kind"] == "artifact_not_stored"]
    assert "report.md" in event["message"] and "limit" in event["message"]
    assert "CREWBOARD_ARTIFACT_MAX_BYTES" in event["message"]
    # The host that ran it still serves it from its own home.
    async with web_node(config_a) as url_a:
        assert (await fetch(url_a, admin, job_id)).status_code == 200


async def test_hostile_names_and_other_users_get_json_errors(hosts) -> None:
    config_a, config_b = hosts
    add_user(config_a, "admin@example.test", admin=True)
    bob = add_user(config_a, "bob@example.test")
    job_id = await run_to_done(config_a)
    (run,) = crews.runs(job_id)
    async with web_node(config_b) as url_b:
        # Not bob's job: 404, as for a job that does not exist.
        for probe in (job_id, 999999):
            refused = await fetch(url_b, bob, probe)
            assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
        admin = add_user(config_a, "root@example.test", admin=True)
        report = (await fetch(url_b, admin, job_id)).content
        for name in ("../../secret_key", "../1/report.md", "/etc/passwd", "..", "a\x1b[31m.md"):
            Job.update(artifact_name=name).where(Job.id == job_id).execute()
            Run.update(artifact=name).where(Run.id == run.id).execute()
            response = await fetch(url_b, admin, job_id)
            # A name that is not a plain file name is ignored, leaving the
            # run's only file; a plain one it did not save is not there.
            if response.status_code == 200:
                assert response.content == report, name
            else:
                assert response.status_code == 404, name
                assert response.json()["error"]["code"] == "not_found"
        assert response.status_code == 404  # the last, plain but unsaved name


def test_only_plain_regular_files_are_stored(hosts, tmp_path) -> None:
    config_a, _ = hosts
    job_id = crews.add_job("Say hello.")
    run = Run.create(job=job_id, supervisor_id="a", started_at=utcnow(), outcome="succeeded")
    folder = tmp_path / "saved"
    (folder / "sub").mkdir(parents=True)
    (folder / "ok.md").write_text("fine")
    (folder / "bell\x07.md").write_text("odd name")
    (folder / "link.md").symlink_to(config_a.home / "secret_key")
    left_out = artifacts.store_run_artifacts(run.id, folder, max_bytes=1024, now=utcnow())
    assert left_out == ["bell\x07.md"]
    assert artifacts.stored_files([run.id]) == {run.id: [artifacts.StoredFile("ok.md", 4)]}
    (event,) = Event.select().where(Event.kind == "artifact_not_stored")
    assert "name cannot be kept" in event.message and "\x07" not in event.message
    # A second end of the same run (a retried record) stores them once.
    artifacts.store_run_artifacts(run.id, folder, max_bytes=1024, now=utcnow())
    assert RunArtifact.select().count() == 1


def run_files(home: Home, run_id: int) -> list[Path]:
    paths = [home.run_log(run_id), home.artifact_dir(run_id), home.workspace(run_id)]
    return [path for path in paths if path.exists()]


async def test_a_delete_on_host_b_reaches_host_a_through_its_sweep(hosts) -> None:
    config_a, config_b = hosts
    admin = add_user(config_a, "admin@example.test", admin=True)
    home_a = Home(config_a.home)
    job_id = await run_to_done(config_a)
    kept_id = await run_to_done(config_a)
    (run,), (kept,) = crews.runs(job_id), crews.runs(kept_id)
    assert run_files(home_a, run.id) and run_files(home_a, kept.id)
    async with web_node(config_b) as url_b, signed_in(url_b, admin) as client:
        assert (await client.delete(f"/api/jobs/{job_id}")).status_code == 204
    assert Run.get_or_none(Run.id == run.id) is None
    assert RunArtifact.select().where(RunArtifact.run == run.id).count() == 0
    # B removed what it had (nothing); A's files wait for A's sweep, which
    # A's supervisor runs on its pruner's cadence.
    assert run_files(home_a, run.id)
    fast = dataclasses.replace(config_a, retention_every_s=0.2)
    async with supervising(fast):
        await waits.wait_for(lambda: not run_files(home_a, run.id), 15, "A's files swept")
    assert run_files(home_a, kept.id), "a run still on the board keeps its files"
    assert RunArtifact.select().where(RunArtifact.run == kept.id).count() == 1


async def test_user_purge_on_host_b_reaches_host_a_through_its_sweep(hosts, monkeypatch) -> None:
    config_a, config_b = hosts
    home_a = Home(config_a.home)
    job_id = await run_to_done(config_a)
    (run,) = crews.runs(job_id)
    owner = crews.job(job_id).owner_id
    now = utcnow()
    chat = ChatSession.create(
        owner=owner,
        session_name="s",
        agent="assistant",
        model_spec="offline:scripted",
        created_at=now,
        updated_at=now,
    )
    home_a.chat_log(chat.id).write_text("{}\n")
    for key, value in TEST_SETTINGS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CREWBOARD_DATABASE_URL", str(config_a.database_url))
    args = build_parser().parse_args(
        ["user", "remove", "crews@example.test", "--purge", "--home", str(config_b.home)]
    )
    assert args.fn(args) == 0
    assert Run.get_or_none(Run.id == run.id) is None
    assert RunArtifact.select().count() == 0 and ChatSession.select().count() == 0
    assert run_files(home_a, run.id) and home_a.chat_log(chat.id).exists()
    report = await sweep_home(home_a)
    assert report.run_ids == [run.id] and report.chat_ids == [chat.id]
    assert not run_files(home_a, run.id) and not home_a.chat_log(chat.id).exists()


async def test_a_chat_deleted_through_host_a_leaves_web_only_host_b_through_its_sweep(
    hosts,
) -> None:
    # Host B runs only a web node: its chat turns write their logs in B's
    # home, which no supervisor of B's ever sweeps.
    config_a, config_b = hosts
    alice = add_user(config_a, "alice@example.test")
    home_b = Home(config_b.home)
    fast_b = dataclasses.replace(config_b, retention_every_s=0.2)
    async with (
        web_node(config_a) as url_a,
        web_node(fast_b) as url_b,
        signed_in(url_a, alice) as on_a,
        signed_in(url_b, alice) as on_b,
    ):
        gone = await chat.create_session(on_b, sessionName="gone")
        kept = await chat.create_session(on_b, sessionName="kept")
        for session in (gone, kept):
            frames = await chat.send(on_b, session["id"], "Hello")
            assert frames[-1].type == "done"
            assert home_b.chat_log(session["id"]).exists()
        assert (await on_a.delete("/api/session/byName/gone")).status_code == 204
        await waits.wait_for(
            lambda: not home_b.chat_log(gone["id"]).exists(), 15, "B's chat log swept"
        )
        assert home_b.chat_log(kept["id"]).exists(), "a session still on the board keeps its log"
        assert len(await chat.replay(on_b, "kept")) > 0
