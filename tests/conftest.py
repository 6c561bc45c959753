"""The test harness every tier reuses: a temp data home, its board, the web
app on a live loopback port, a user of each role and a client signed in as
each."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from crewboard.board import db
from crewboard.board import users as board_users
from crewboard.bootstrap import open_home
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.home import Home
from crewboard.passwords import Passwords
from tests.support import engine

PASSWORD = "correct horse battery"

# Cheap hashes, short intervals: the same code paths, at test speed.
TEST_SETTINGS = {
    "CREWBOARD_ARGON2_TIME_COST": "1",
    "CREWBOARD_ARGON2_MEMORY_KIB": "64",
    "CREWBOARD_HEARTBEAT_S": "0.2",
    "CREWBOARD_POLL_S": "0.2",
    "CREWBOARD_DRAIN_S": "2",
    "CREWBOARD_GRACE_S": "1",
    "CREWBOARD_PORT": "0",
}


@pytest.fixture(scope="session", autouse=True)
def _user_config_of_the_session(tmp_path_factory: pytest.TempPathFactory):
    """The first start records its home in the user's config file
    ($XDG_CONFIG_HOME): never the real one of whoever runs the tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
        yield


@pytest.fixture(autouse=True)
def _user_config_of_the_test(tmp_path_factory: pytest.TempPathFactory, monkeypatch):
    """Each test its own user config file, so that no test finds the home
    an earlier one recorded."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))


def make_config(home: Path, **overrides: object) -> Config:
    """A test's settings for ``home``, on the test's board engine
    (:mod:`tests.support.engine`)."""
    config = Config.load(home, environ=TEST_SETTINGS)
    board_url = None if "database_url" in overrides else engine.database_url()
    if board_url is not None:
        overrides = {"database_url": board_url, **overrides}
    return dataclasses.replace(config, **overrides) if overrides else config


# Fixtures that open the test's board on the engine under test; a test that
# uses one is marked ``board`` at collection. The PostgreSQL pass in CI runs
# ``-m board``.
BOARD_FIXTURES = {"config", "site", "restartable"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BOARD_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.board)


def pytest_sessionfinish() -> None:
    engine.end_session()


@pytest.fixture(autouse=True)
def _board_engine(request: pytest.FixtureRequest) -> Iterator[None]:
    """On PostgreSQL: skip ``sqlite_only`` tests, and drop the test's
    database when it ends. On either engine: fail a test that opened a board
    without being marked ``board``, since the PostgreSQL pass would miss it."""
    marker = request.node.get_closest_marker("sqlite_only")
    if marker is not None and engine.on_postgres():
        pytest.skip(f"SQLite only: {marker.args[0] if marker.args else 'board.db itself'}")
    try:
        yield
        if engine.asked_for_board() and request.node.get_closest_marker("board") is None:
            pytest.fail(
                "the test opened a board without a fixture of BOARD_FIXTURES: "
                "mark it @pytest.mark.board so that it runs on PostgreSQL too"
            )
    finally:
        db.close()
        engine.end_test()


# The server PostgreSQL-only tests use, whichever engine the rest run on.
PG_SERVER = engine.SERVER or "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[tuple[Config, Home]]:
    """A home whose board is a fresh PostgreSQL database, dropped afterwards,
    for tests of what only PostgreSQL does (row locks, notifications)."""
    from tests.support import need

    try:
        url = engine.fresh_database(PG_SERVER)
    except Exception as exc:  # psycopg2 missing or no server: say which
        need(False, f"needs PostgreSQL on 127.0.0.1:5432 ({exc})")
    config = make_config(tmp_path / "home", database_url=url)
    try:
        yield config, open_home(config)
    finally:
        db.close()
        engine.release(url)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "home")


@pytest.fixture
def home(config: Config) -> Home:
    home = open_home(config)
    yield home
    db.close()


@dataclasses.dataclass
class Account:
    id: int
    email: str
    password: str
    is_admin: bool


def add_user(config: Config, email: str, *, admin: bool = False) -> Account:
    passwords = Passwords(config.argon2_time_cost, config.argon2_memory_kib)
    user = board_users.create_user(email, passwords.hash(PASSWORD), is_admin=admin, now=utcnow())
    return Account(user.id, user.email, PASSWORD, admin)


@pytest.fixture
def admin(config: Config, home: Home) -> Account:
    return add_user(config, "admin@example.test", admin=True)


@pytest.fixture
def alice(config: Config, home: Home, admin: Account) -> Account:
    return add_user(config, "alice@example.test")


@pytest.fixture
def bob(config: Config, home: Home, admin: Account) -> Account:
    return add_user(config, "bob@example.test")


@pytest.fixture
async def server(config: Config, home: Home, admin: Account, nursery) -> AsyncIterator[str]:
    """The web app on a live loopback port; yields its base URL."""
    from crewboard.web.server import serve_web

    stop = trio.Event()
    binds = await nursery.start(
        lambda task_status: serve_web(config, shutdown=stop, task_status=task_status)
    )
    yield binds[0]
    stop.set()


def client_for(base_url: str, **kwargs: object) -> httpx.AsyncClient:
    """A client that behaves like a same-origin browser page."""
    headers = {"Origin": base_url}
    headers.update(kwargs.pop("headers", {}))  # type: ignore[arg-type]
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30, **kwargs)


@asynccontextmanager
async def signed_in(base_url: str, account: Account) -> AsyncIterator[httpx.AsyncClient]:
    """A same-origin client signed in as ``account``."""
    async with client_for(base_url) as client:
        response = await client.post(
            "/auth/login", json={"email": account.email, "password": account.password}
        )
        assert response.status_code == 200, response.text
        yield client


@pytest.fixture
async def anon(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(server) as client:
        yield client


@pytest.fixture
async def as_admin(server: str, admin: Account) -> AsyncIterator[httpx.AsyncClient]:
    async with signed_in(server, admin) as client:
        yield client


@pytest.fixture
async def as_alice(server: str, alice: Account) -> AsyncIterator[httpx.AsyncClient]:
    async with signed_in(server, alice) as client:
        yield client


@pytest.fixture
async def as_bob(server: str, bob: Account) -> AsyncIterator[httpx.AsyncClient]:
    async with signed_in(server, bob) as client:
        yield client
