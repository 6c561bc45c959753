"""``/api/models`` and ``/api/agents`` through the live server: who may call
them, what they list, and that providers which are down, slow or answer
garbage are left out without failing the list."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
import trio

from crewboard.config import ProviderEndpoint
from crewboard.providers import OPENAI_MODELS
from tests.conftest import make_config, signed_in
from tests.support.fake_openai import Reply, fake_openai, silent_endpoint

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board

SHIPPED = {"assistant", "coder", "researcher", "triage", "writer"}


async def test_both_lists_need_a_login_and_serve_every_user(server, anon, alice, bob, admin):
    for url in ("/api/models", "/api/agents"):
        response = await anon.get(url)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    for account in (alice, bob, admin):
        async with signed_in(server, account) as client:
            for url in ("/api/models", "/api/agents"):
                response = await client.get(url)
                assert response.status_code == 200, (account.email, url)
                assert isinstance(response.json(), list)


async def test_agents_lists_the_shipped_presets_without_their_instructions(as_alice):
    agents = (await as_alice.get("/api/agents")).json()
    assert {a["id"] for a in agents} == SHIPPED
    for agent in agents:
        assert set(agent) == {
            "id",
            "name",
            "description",
            "model",
            "tools",
            "handoffs",
            "mcp",
            "mcpTools",
        }
        assert agent["mcp"] == [] and agent["mcpTools"] == []
    triage = next(a for a in agents if a["id"] == "triage")
    assert set(triage["handoffs"]) == {"researcher", "writer", "coder", "assistant"}


async def test_models_always_offers_the_offline_model(as_alice):
    models = (await as_alice.get("/api/models")).json()
    assert {"id": "offline:scripted", "provider": "offline"}.items() <= models[-1].items()
    for model in models:
        assert set(model) == {"id", "provider", "name"}


class TestBrokenPresets:
    @pytest.fixture
    def config(self, tmp_path):
        folder = tmp_path / "agents"
        folder.mkdir()
        (folder / "helper.agent.yaml").write_text(
            "name: Helper\ndescription: Helps.\ninstructions: Help.\nmodel: offline:scripted\n"
        )
        (folder / "broken.agent.yaml").write_text("name: [unclosed\n")
        (folder / "nameless.agent.yaml").write_text("instructions: no name\n")
        (folder / "lonely.agent.yaml").write_text(
            "name: Lonely\ninstructions: Hand off.\nhandoffs: [nobody]\n"
        )
        return make_config(tmp_path / "home", agents=(folder,))

    async def test_broken_files_are_logged_and_left_out(self, as_alice, caplog):
        with caplog.at_level(logging.WARNING, logger="crewboard.web.api.agents"):
            response = await as_alice.get("/api/agents")
            again = await as_alice.get("/api/agents")
        assert response.status_code == again.status_code == 200
        assert {a["id"] for a in response.json()} == SHIPPED | {"helper"}
        logged = caplog.text
        assert "broken.agent.yaml" in logged and "nameless.agent.yaml" in logged
        assert "lonely.agent.yaml" in logged
        # Each problem is logged once, not on every request.
        assert logged.count("broken.agent.yaml") == 1

        ok = await as_alice.post("/api/session/create", json={"agent": "helper"})
        assert ok.status_code == 201 and ok.json()["modelSpec"] == "offline:scripted"
        refused = await as_alice.post("/api/session/create", json={"agent": "broken"})
        assert refused.status_code == 422
        assert "agent" in refused.json()["error"]["details"]["fields"]


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback URL that accepts connections and never answers."""
    with silent_endpoint() as url:
        yield url


class TestProvidersThatMisbehave:
    @pytest.fixture
    def good(self):
        with fake_openai() as fake:
            fake.models = ["model-a", "model-b"]
            yield fake

    @pytest.fixture
    def garbage(self):
        with fake_openai() as fake:
            fake.models_reply = Reply(events=["this is not JSON"])
            yield fake

    @pytest.fixture
    def failing(self):
        with fake_openai() as fake:
            fake.models_reply = Reply.error(500, "upstream exploded")
            yield fake

    @pytest.fixture
    def config(self, tmp_path, good, garbage, failing, closed_port_url, silent_url):
        endpoints = {
            "good": good.base_url,
            "garbage": garbage.base_url,
            "failing": failing.base_url,
            "slow": silent_url,
        }
        return make_config(
            tmp_path / "home",
            lmstudio_base_url=closed_port_url,
            openai_api_key="sk-test-not-a-real-key",
            providers={name: ProviderEndpoint(name, url) for name, url in endpoints.items()},
        )

    async def test_only_the_providers_that_answer_are_listed(
        self, as_alice, caplog, good, garbage, failing
    ):
        with caplog.at_level(logging.WARNING, logger="crewboard.providers"):
            # The silent provider is given up on: the list comes, without it.
            with trio.fail_after(30):
                response = await as_alice.get("/api/models")
        assert response.status_code == 200
        ids = [m["id"] for m in response.json()]
        assert ids == [
            *(f"openai:{m}" for m in OPENAI_MODELS),
            "good:model-a",
            "good:model-b",
            "offline:scripted",
        ]
        for provider in ("lmstudio", "garbage", "failing", "slow"):
            assert f"provider {provider} " in caplog.text, provider
        assert "sk-test-not-a-real-key" not in caplog.text
        # Cached: the second answer is the same, and no provider is asked again.
        asked = [fake.models_asked for fake in (good, garbage, failing)]
        assert all(asked)
        assert (await as_alice.get("/api/models")).json() == response.json()
        assert [fake.models_asked for fake in (good, garbage, failing)] == asked
