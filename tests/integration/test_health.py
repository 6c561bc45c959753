"""``/healthz`` and ``/readyz`` against a live web process and a real
board.db: answered without credentials, within a second while the board is
locked, 503 in the error shape when something is wrong, and never in the
access log at the default level."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

from crewboard.home import Home
from crewboard.web.app import create_app
from tests.support.supervisor import supervising


@contextmanager
def board_write_locked(home: Home) -> Iterator[None]:
    """Hold board.db's write lock, as a long write transaction would."""
    conn = sqlite3.connect(home.board_db, timeout=5, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("UPDATE meta SET value = value")
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@contextmanager
def board_hanging(home: Home) -> Iterator[None]:
    """Make every new connection to board.db hang, as on a wedged file
    system: the file becomes a FIFO nobody writes to, so opening it to read
    waits for a writer (connections already open keep the real file).
    Afterwards a writer comes by and the hung reader gives up."""
    moved = home.board_db.with_name("board.db.moved")
    home.board_db.rename(moved)
    os.mkfifo(home.board_db)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            fd = os.open(home.board_db, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        home.board_db.unlink()
        moved.rename(home.board_db)


@pytest.mark.sqlite_only("holds board.db's write lock")
async def test_healthz_answers_anyone_while_the_board_is_being_written(anon, home):
    response = await anon.get("/healthz")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"
    with board_write_locked(home):
        started = time.monotonic()
        response = await anon.get("/healthz")
        elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert elapsed < 1.0


@pytest.mark.sqlite_only("holds board.db's write lock")
async def test_healthz_is_503_within_a_second_when_the_board_hangs(anon, home):
    with board_hanging(home):
        started = time.monotonic()
        response = await anon.get("/healthz")
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "unhealthy"
        assert "did not answer" in response.json()["error"]["message"]
        assert elapsed < 1.5
    assert (await anon.get("/healthz")).status_code == 200


@pytest.mark.sqlite_only("removes board.db")
async def test_healthz_is_503_when_the_board_is_gone(anon, home):
    moved = home.board_db.with_name("board.db.moved")
    home.board_db.rename(moved)
    try:
        response = await anon.get("/healthz")
    finally:
        moved.rename(home.board_db)
    assert response.status_code == 503
    assert "cannot be read" in response.json()["error"]["message"]


async def test_readyz_needs_a_live_supervisor(anon, config):
    response = await anon.get("/readyz")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    assert "no supervisor is alive" in error["message"]
    assert error["details"]["supervisor"]["alive"] is False
    assert error["details"]["disk"]["ok"] is True
    async with supervising(config, forkserver=False):
        response = await anon.get("/readyz")
        assert response.status_code == 200, response.text
        body = response.json()
    assert body["status"] == "ready" and body["supervisor"]["alive"] is True
    assert "supervisors" not in body["supervisor"]  # no hosts or pids on a public route
    assert body["disk"]["freeBytes"] > 0


async def test_readyz_is_503_when_the_home_is_short_of_space(config, home, admin, nursery):
    import httpx
    import trio

    from crewboard.web.server import serve_web

    config = dataclasses.replace(config, min_free_mb=1 << 40)
    stop = trio.Event()
    binds = await nursery.start(
        lambda task_status: serve_web(config, shutdown=stop, task_status=task_status)
    )
    async with supervising(config, forkserver=False), httpx.AsyncClient() as client:
        response = await client.get(binds[0] + "/readyz")
    stop.set()
    assert response.status_code == 503
    assert "MiB free" in response.json()["error"]["message"]
    assert response.json()["error"]["details"]["disk"]["ok"] is False


async def test_probes_stay_out_of_the_access_log(anon, caplog):
    caplog.set_level(logging.INFO, logger="crewboard.access")
    await anon.get("/healthz")
    await anon.get("/readyz")
    await anon.get("/auth/google-enabled")
    paths = [r.getMessage() for r in caplog.records if r.name == "crewboard.access"]
    assert any("/auth/google-enabled" in p for p in paths)
    assert not any("/healthz" in p or "/readyz" in p for p in paths), paths


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_are_public_routes(config, home, path):
    app = create_app(config, home)
    assert any(rule.rule == path for rule in app.url_map.iter_rules())


async def test_crewboard_health_asks_the_server_the_home_names(server, config, capsys):
    import trio

    from crewboard.cli import build_parser

    def run(*argv: str) -> int:
        args = build_parser().parse_args(["health", "--home", str(config.home), *argv])
        return args.fn(args)

    assert await trio.to_thread.run_sync(run) == 0
    assert '"status":"ok"' in capsys.readouterr().out.replace(" ", "")
    assert await trio.to_thread.run_sync(run, "--ready") == 1
    assert "not_ready" in capsys.readouterr().err
    assert await trio.to_thread.run_sync(run, "--url", "http://127.0.0.1:9") == 1


async def test_a_web_server_cancelled_mid_serve_holds_no_inotify_instance(config, admin):
    """Cancelled, not stopped (as an embedding process tears it down): its
    catalog's inotify instance goes back at once, not whenever a collector
    finds it."""
    from crewboard.web.server import serve_web
    from tests.conftest import signed_in
    from tests.support.procs import inotify_instances

    before = inotify_instances()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: serve_web(config, task_status=task_status))
        async with signed_in(binds[0], admin) as client:
            agents = await client.get("/api/agents")
            assert agents.status_code == 200 and agents.json()
        assert inotify_instances() > before, "the catalog watches its folders"
        nursery.cancel_scope.cancel()
    assert inotify_instances() == before
