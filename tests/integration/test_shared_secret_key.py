"""Web nodes with homes of their own behind one address: with the same
``CREWBOARD_SECRET_KEY_FILE`` each accepts what another signed, and a Google
sign-in's state, once spent on one node, is refused on every other."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crewboard.bootstrap import open_home
from crewboard.config import Config
from crewboard.errors import ConfigError
from crewboard.web.auth import google
from tests.conftest import make_config
from tests.integration.test_google_oidc import (
    ALLOWED_DOMAINS,
    CLIENT_ID,
    CLIENT_SECRET,
    Browser,
    refused,
    session_count,
    signed_in,
)
from tests.support.fake_oidc import FakeOidcProvider, new_signing_key, open_fake_oidc
from tests.support.web_nodes import web_node

pytestmark = pytest.mark.board


@pytest.fixture
async def provider() -> AsyncIterator[FakeOidcProvider]:
    async with open_fake_oidc(CLIENT_ID, CLIENT_SECRET, new_signing_key("key-1")) as provider:
        yield provider


def key_file(folder: Path, key: bytes = b"k" * 48, mode: int = 0o600) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "crewboard.key"
    path.write_bytes(key + b"\n")
    os.chmod(path, mode)
    return path


def google_node(home: Path, provider: FakeOidcProvider, **settings: Any) -> Config:
    return make_config(
        home,
        google_client_id=CLIENT_ID,
        google_client_secret=CLIENT_SECRET,
        google_discovery_url=provider.discovery_url,
        google_allowed_domains=ALLOWED_DOMAINS,
        **settings,
    )


async def start_on(url: str) -> tuple[str, str]:
    """Start a Google sign-in on the node at ``url`` and consent at the
    provider: the callback's URL (path and query) and the flow cookie."""
    async with Browser(url) as browser:
        back = await browser.consent(await browser.start())
        return back.removeprefix(url), browser.client.cookies["crewboard_flow"]


async def finish_on(url: str, callback: str, flow_cookie: str):
    async with Browser(url, cookies={"crewboard_flow": flow_cookie}) as browser:
        return await browser.finish(callback)


async def test_nodes_sharing_a_key_file_accept_each_others_flow_and_spend_its_state_once(
    tmp_path: Path, provider
):
    shared = key_file(tmp_path / "keys")
    a = google_node(tmp_path / "node-a", provider, secret_key_file=shared)
    b = google_node(tmp_path / "node-b", provider, secret_key_file=shared)
    async with web_node(a) as url_a, web_node(b) as url_b:
        callback, flow = await start_on(url_a)
        # Signed by node A, read by node B: the sign-in completes there.
        signed_in(await finish_on(url_b, callback, flow))
        # The same flow again, on either node: its state is spent.
        assert refused(await finish_on(url_a, callback, flow)) == google.EXPIRED
        assert refused(await finish_on(url_b, callback, flow)) == google.EXPIRED
    assert provider.token_requests == 1
    assert await session_count() == 1


async def test_nodes_with_their_own_keys_refuse_each_others_flow(tmp_path: Path, provider):
    a = google_node(tmp_path / "node-a", provider)
    b = google_node(tmp_path / "node-b", provider)
    async with web_node(a) as url_a, web_node(b) as url_b:
        callback, flow = await start_on(url_a)
        assert refused(await finish_on(url_b, callback, flow)) == google.EXPIRED
        # The node that signed it still takes it.
        signed_in(await finish_on(url_a, callback, flow))
    assert provider.token_requests == 1


def test_a_key_file_other_users_can_read_stops_the_start(tmp_path: Path):
    shared = key_file(tmp_path / "keys", mode=0o644)
    config = make_config(tmp_path / "home", secret_key_file=shared)
    with pytest.raises(ConfigError, match=r"CREWBOARD_SECRET_KEY_FILE.*readable by every user"):
        open_home(config)


def test_a_short_key_stops_the_start(tmp_path: Path):
    shared = key_file(tmp_path / "keys", key=b"too-short")
    config = make_config(tmp_path / "home", secret_key_file=shared)
    with pytest.raises(ConfigError, match=r"CREWBOARD_SECRET_KEY_FILE.*at least 32"):
        open_home(config)


def test_a_missing_key_file_stops_the_start(tmp_path: Path):
    config = make_config(tmp_path / "home", secret_key_file=tmp_path / "nowhere.key")
    with pytest.raises(ConfigError, match="CREWBOARD_SECRET_KEY_FILE: cannot read"):
        open_home(config)


def test_the_key_file_is_a_setting(tmp_path: Path):
    shared = key_file(tmp_path / "keys")
    config = Config.load(tmp_path / "home", environ={"CREWBOARD_SECRET_KEY_FILE": str(shared)})
    assert config.secret_key_file == shared
