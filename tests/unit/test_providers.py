"""Model specs, their resolution into a runner's ``model``, and the model list
of GET /api/models (cached, and never failing because a provider is down)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from crewboard.config import Config, ProviderEndpoint
from crewboard.errors import ConfigError, ValidationFailed
from crewboard.providers import ModelCatalog, list_models, parse_model_spec, resolve_model
from tests.support.fake_openai import Reply, fake_openai, silent_endpoint

DEAD_URL = "http://127.0.0.1:9/v1"  # the discard port: nothing listens


def make_config(tmp_path: Path, **fields: object) -> Config:
    base = Config(home=tmp_path, lmstudio_base_url=DEAD_URL)
    return dataclasses.replace(base, **fields)


def test_parse_model_spec() -> None:
    assert parse_model_spec("openai:gpt-4o-mini") == ("openai", "gpt-4o-mini")
    assert parse_model_spec("lmstudio:qwen2.5:7b") == ("lmstudio", "qwen2.5:7b")
    for bad in ("gpt-4o", ":x", "openai:", ""):
        with pytest.raises(ValidationFailed) as caught:
            parse_model_spec(bad)
        assert "modelSpec" in caught.value.fields


def test_resolve_each_kind_of_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_KEY", "vk-123")
    config = make_config(
        tmp_path,
        openai_api_key="sk-abc",
        providers={"vllm": ProviderEndpoint("vllm", "http://gpu:8000/v1", "VLLM_KEY")},
    )
    assert resolve_model("offline:scripted", config) == {
        "spec": "offline:scripted",
        "provider": "offline",
        "name": "scripted",
        "baseUrl": None,
        "apiKey": None,
    }
    openai = resolve_model("openai:gpt-4o-mini", config)
    assert (openai["baseUrl"], openai["apiKey"]) == ("https://api.openai.com/v1", "sk-abc")
    assert resolve_model("lmstudio:qwen", config)["baseUrl"] == DEAD_URL
    vllm = resolve_model("vllm:llama-3", config)
    assert (vllm["baseUrl"], vllm["apiKey"], vllm["name"]) == (
        "http://gpu:8000/v1",
        "vk-123",
        "llama-3",
    )


def test_unknown_providers_and_missing_keys_are_validation_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UNSET_KEY", raising=False)
    config = make_config(
        tmp_path, providers={"ep": ProviderEndpoint("ep", "http://x/v1", "UNSET_KEY")}
    )
    with pytest.raises(ValidationFailed, match="OPENAI_API_KEY"):
        resolve_model("openai:gpt-4o", config)
    with pytest.raises(ValidationFailed, match="unknown model provider 'anthropic'"):
        resolve_model("anthropic:claude", config)
    with pytest.raises(ValidationFailed, match=r"\$UNSET_KEY"):
        resolve_model("ep:m", config)
    with pytest.raises(ValidationFailed, match="one model"):
        resolve_model("offline:gpt", config)


async def test_models_lists_openai_lmstudio_endpoints_and_offline(tmp_path: Path) -> None:
    with fake_openai() as lmstudio, fake_openai() as ollama:
        lmstudio.models = ["qwen2.5-7b-instruct"]
        ollama.models = ["llama3.2", "mistral"]
        config = make_config(
            tmp_path,
            openai_api_key="sk-abc",
            lmstudio_base_url=lmstudio.base_url,
            providers={"ollama": ProviderEndpoint("ollama", ollama.base_url)},
        )
        models = await list_models(config, ModelCatalog())
    ids = [m["id"] for m in models]
    assert "openai:gpt-4o-mini" in ids
    assert "lmstudio:qwen2.5-7b-instruct" in ids
    assert {"ollama:llama3.2", "ollama:mistral"} <= set(ids)
    assert ids[-1] == "offline:scripted"
    offline = models[-1]
    assert offline["provider"] == "offline" and "no network" in offline["name"]
    assert all(set(m) == {"id", "provider", "name"} for m in models)


async def test_down_slow_or_garbage_providers_are_left_out_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with silent_endpoint() as slow, fake_openai() as garbage:
        garbage.models_reply = Reply(body={"models": "what"})
        config = make_config(
            tmp_path,
            providers={
                "slow": ProviderEndpoint("slow", slow),
                "garbage": ProviderEndpoint("garbage", garbage.base_url),
            },
        )
        with caplog.at_level(logging.WARNING, logger="crewboard.providers"):
            models = await list_models(config, ModelCatalog(timeout_s=0.2))
    assert [m["id"] for m in models] == ["offline:scripted"], "no openai key, everything else down"
    logged = caplog.text
    assert "lmstudio" in logged and "slow" in logged and "garbage" in logged


async def test_the_list_is_cached_for_thirty_seconds(tmp_path: Path) -> None:
    now = [1000.0]
    catalog = ModelCatalog(clock=lambda: now[0])
    with fake_openai() as lmstudio:
        config = make_config(tmp_path, lmstudio_base_url=lmstudio.base_url)
        first = await catalog.list(config)
        lmstudio.models = ["another"]
        now[0] += 29
        assert await catalog.list(config) == first
        now[0] += 2
        assert "lmstudio:another" in [m["id"] for m in await catalog.list(config)]


def test_provider_tables_carry_limits_and_quirks(tmp_path: Path) -> None:
    (tmp_path / "crewboard.toml").write_text(
        "[providers.llamacpp]\n"
        'base_url = "http://127.0.0.1:8080/v1"\n'
        "max_tokens = 512\n"
        "text_tool_calls = true\n"
        "[providers.vllm]\n"
        'base_url = "http://gpu.lan:8000/v1"\n'
        "max_concurrency = 8\n"
        "[providers.ollama]\n"
        'base_url = "http://localhost:11434/v1"\n'
        "max_concurrency = 0\n"
        "[providers.remote]\n"
        'base_url = "https://models.example.com/v1"\n'
    )
    config = dataclasses.replace(
        Config.load(tmp_path, environ={}), openai_api_key="sk-abc", lmstudio_base_url=DEAD_URL
    )
    local = resolve_model("llamacpp:smollm2", config)
    assert (local["maxTokens"], local["maxConcurrency"], local["textToolCalls"]) == (512, 1, True)
    assert local["stateDir"] == str(tmp_path.resolve() / "run" / "providers" / "llamacpp")
    assert resolve_model("vllm:m", config)["maxConcurrency"] == 8
    assert resolve_model("ollama:m", config)["maxConcurrency"] is None, "0 lifts the limit"
    assert resolve_model("remote:m", config)["maxConcurrency"] is None
    assert resolve_model("remote:m", config)["textToolCalls"] is False
    assert resolve_model("lmstudio:m", config)["maxConcurrency"] == 1
    assert resolve_model("openai:gpt-4o", config)["maxConcurrency"] is None


@pytest.mark.parametrize(
    "line",
    ["max_tokens = 0", "max_concurrency = -1", 'max_tokens = "many"', 'text_tool_calls = "yes"'],
)
def test_bad_provider_limits_are_config_errors(tmp_path: Path, line: str) -> None:
    (tmp_path / "crewboard.toml").write_text(
        f'[providers.local]\nbase_url = "http://127.0.0.1:8080/v1"\n{line}\n'
    )
    with pytest.raises(ConfigError, match=r"\[providers.local\]"):
        Config.load(tmp_path, environ={})
