"""Secrets in the configuration: read from the environment or from files (a
``NAME_FILE`` or systemd's credentials folder), then taken out of the
process's environment; and the shell's sandbox decision, handed to runners in
their limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crewboard.config import Config, ShellSandbox, take_secret_env
from crewboard.runspec import Limits


def test_secrets_come_from_a_file_or_the_credentials_folder(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "google_client_secret").write_text("g-secret")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "crewboard.toml").write_text(
        '[providers.vllm]\nbase_url = "http://gpu/v1"\napi_key_env = "VLLM_KEY"\n'
    )
    (creds / "vllm_key").write_text("vk-cred")
    environ = {"OPENAI_API_KEY_FILE": str(key_file), "CREDENTIALS_DIRECTORY": str(creds)}
    config = Config.load(tmp_path / "home", environ=environ)
    assert config.openai_api_key == "sk-from-file"
    assert config.google_client_secret == "g-secret"
    assert config.providers["vllm"].api_key == "vk-cred"
    assert "sk-from-file" not in repr(config) and "vk-cred" not in repr(config)
    # The environment wins over a file.
    assert Config.load(
        tmp_path, environ={**environ, "OPENAI_API_KEY": "sk-env"}
    ).openai_api_key == ("sk-env")


def test_secret_variables_leave_the_environment_once_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-taken")
    monkeypatch.setenv("CREWBOARD_ADMIN_PASSWORD", "first admin pass")
    monkeypatch.setenv("CREWBOARD_PORT", "8123")
    config = Config.load(tmp_path)
    taken = take_secret_env(config)
    assert taken == {"OPENAI_API_KEY": "sk-taken", "CREWBOARD_ADMIN_PASSWORD": "first admin pass"}
    assert "OPENAI_API_KEY" not in os.environ and "CREWBOARD_ADMIN_PASSWORD" not in os.environ
    assert os.environ["CREWBOARD_PORT"] == "8123"
    assert config.openai_api_key == "sk-taken"


def test_runners_learn_how_the_shell_may_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = ShellSandbox("/usr/bin/bwrap", "no user namespaces")
    monkeypatch.setattr(Config, "shell_sandbox", lambda self: broken)
    refused = Config.load(tmp_path, environ={"CREWBOARD_ALLOW_SHELL": "1"}).runner_limits()
    assert (refused.shell_sandbox, refused.shell_unavailable) == ("bwrap", "no user namespaces")
    allowed = Config.load(
        tmp_path,
        environ={"CREWBOARD_ALLOW_SHELL": "1", "CREWBOARD_ALLOW_UNSANDBOXED_SHELL": "1"},
    ).runner_limits()
    assert (allowed.shell_sandbox, allowed.shell_unavailable) == ("none", None)
    working = ShellSandbox("/usr/bin/bwrap", None)
    monkeypatch.setattr(Config, "shell_sandbox", lambda self: working)
    limits = Config.load(
        tmp_path,
        environ={
            "CREWBOARD_ALLOW_SHELL": "1",
            "CREWBOARD_ALLOW_UNSANDBOXED_SHELL": "1",
            "CREWBOARD_SHELL_NETWORK": "1",
        },
    ).runner_limits()
    assert (limits.shell_sandbox, limits.shell_bwrap, limits.shell_network) == (
        "bwrap",
        "/usr/bin/bwrap",
        True,
    )
    assert Limits.from_json(limits.to_json()) == limits
