"""The runner's spec: defaults for optional keys, errors naming the bad key, and
the round trip from the type the launcher and the chat turns build to the wire."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crewboard.runner.spec import (
    AgentDef,
    Limits,
    ModelDef,
    RunnerSpec,
    SpecError,
    find_log_path,
    parse_spec,
)
from crewboard.runspec import MAX_STEPS


def minimal(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "runId": "42",
        "agentId": "assistant",
        "agents": {"assistant": {"id": "assistant", "name": "Assistant", "instructions": "Help."}},
        "model": {"spec": "offline:scripted", "provider": "offline", "name": "scripted"},
        "prompt": "hi",
        "logPath": "/tmp/run-42.jsonl",
    }
    spec.update(overrides)
    return spec


def test_a_minimal_spec_gets_defaults() -> None:
    spec = parse_spec(minimal())
    assert spec.kind == "job"
    assert spec.messages == ()
    assert spec.artifact is None
    assert spec.limits == Limits()
    assert spec.limits.allow_shell is False
    assert spec.workspace.is_absolute() and spec.artifact_dir.is_absolute()
    assert spec.log_path == Path("/tmp/run-42.jsonl")
    assert spec.model.api_key is None


def test_limits_and_messages_are_read() -> None:
    spec = parse_spec(
        minimal(
            kind="chat",
            runId=7,
            messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            limits={"maxSteps": 3, "allowShell": True, "httpAllow": ["10.0.0.0/8"]},
        )
    )
    assert spec.run_id == "7"
    assert spec.kind == "chat"
    assert len(spec.messages) == 2
    assert spec.limits.max_steps == 3
    assert spec.limits.allow_shell is True
    assert spec.limits.http_allow == ("10.0.0.0/8",)


def test_the_api_key_never_shows_in_the_spec_repr() -> None:
    model = {"spec": "openai:x", "provider": "openai", "name": "x", "apiKey": "sk-very-secret"}
    spec = parse_spec(minimal(model=model))
    assert spec.model.api_key == "sk-very-secret"
    assert "sk-very-secret" not in repr(spec)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"runId": None}, "runId"),
        ({"logPath": "relative.jsonl"}, "logPath"),
        ({"agentId": "ghost"}, "agentId"),
        ({"agents": {}}, "agents"),
        ({"model": {"provider": "offline"}}, "model.spec"),
        ({"prompt": 5}, "prompt"),
        ({"kind": "batch"}, "kind"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0]"),
        ({"limits": {"maxSteps": 0}}, "limits.maxSteps"),
        ({"limits": {"allowShell": "yes"}}, "limits.allowShell"),
        ({"workspace": "ws"}, "workspace"),
        ({"requestId": 7}, "requestId"),
        ({"requestId": "x" * 65}, "requestId"),
        ({"lease": {"seconds": 0}}, "lease.seconds"),
        ({"lease": {"seconds": True}}, "lease.seconds"),
        ({"lease": "soon"}, "lease"),
        ({"shipAck": "/tmp/run-42.ack"}, "shipAck"),
    ],
)
def test_a_bad_spec_names_the_bad_key(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(SpecError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_spec(minimal(**overrides))


def test_a_handoff_target_must_be_in_the_spec() -> None:
    agents = {"a": {"name": "A", "instructions": "x", "handoffs": ["b"]}}
    with pytest.raises(SpecError, match=r"agents\.a\.handoffs"):
        parse_spec(minimal(agentId="a", agents=agents))


def test_the_log_path_is_found_in_an_otherwise_broken_spec() -> None:
    assert find_log_path({"logPath": "/x/y.jsonl", "agents": 3}) == Path("/x/y.jsonl")
    assert find_log_path({"logPath": "rel"}) is None
    assert find_log_path([1, 2]) is None


def test_a_built_spec_goes_over_the_wire_and_back_unchanged() -> None:
    spec = RunnerSpec(
        run_id="chat-3-5",
        kind="chat",
        agent_id="assistant",
        agents={"assistant": AgentDef(id="assistant", name="Assistant", instructions="Help.")},
        model=ModelDef(spec="openai:x", provider="openai", name="x", api_key="sk-1"),
        messages=({"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}),
        prompt="hi",
        log_path=Path("/tmp/chat.jsonl"),
        workspace=Path("/tmp/ws"),
        artifact_dir=Path("/tmp/art"),
        limits=Limits(allow_shell=True, http_allow=("10.0.0.0/8",), tool_timeout_s=5.0),
        request_id="req-7",
    )
    document = json.loads(spec.to_line())
    assert set(document) == {
        "runId",
        "kind",
        "agentId",
        "agents",
        "model",
        "messages",
        "prompt",
        "workspace",
        "logPath",
        "artifactDir",
        "artifact",
        "limits",
        "requestId",
    }
    assert document["requestId"] == "req-7"
    assert document["limits"] == {
        "maxSteps": MAX_STEPS,
        "allowShell": True,
        "httpAllow": ["10.0.0.0/8"],
        "toolTimeoutS": 5.0,
    }
    assert document["model"]["apiKey"] == "sk-1"
    assert parse_spec(document) == spec


def test_the_output_caps_go_over_the_wire_when_not_the_defaults() -> None:
    assert "maxResultBytes" not in Limits().to_json() and "maxLogBytes" not in Limits().to_json()
    assert Limits().max_result_bytes == 1 << 20 and Limits().max_log_bytes == 64 << 20
    limits = Limits(max_result_bytes=4096, max_log_bytes=1 << 20)
    document = limits.to_json()
    assert document["maxResultBytes"] == 4096 and document["maxLogBytes"] == 1 << 20
    assert Limits.from_json(document) == limits
    with pytest.raises(SpecError, match=r"limits\.maxLogBytes"):
        Limits.from_json({"maxLogBytes": 0})


def test_every_run_and_turn_gets_the_step_limit_unless_told_otherwise() -> None:
    assert parse_spec(minimal(kind="chat")).limits.max_steps == MAX_STEPS
    assert Limits().to_json()["maxSteps"] == MAX_STEPS


def test_a_spec_is_frozen_and_names_what_it_lacks() -> None:
    spec = parse_spec(minimal())
    with pytest.raises(AttributeError):
        spec.prompt = "something else"  # type: ignore[misc]
    with pytest.raises(TypeError, match="log_path"):
        RunnerSpec(
            run_id="1",
            agent_id="a",
            agents={},
            model=spec.model,
            prompt="",
            workspace=Path("/w"),
            artifact_dir=Path("/a"),
        )


def test_a_job_runs_lease_goes_over_the_wire_and_a_chat_turn_has_none() -> None:
    lease = {"seconds": 15}
    spec = parse_spec(minimal(lease=lease))
    assert spec.lease is not None and spec.lease.seconds == 15.0
    assert json.loads(spec.to_line())["lease"] == lease
    assert parse_spec(minimal()).lease is None
    assert "lease" not in json.loads(parse_spec(minimal()).to_line())


def test_a_shipped_runs_acknowledgements_go_over_the_wire_and_are_absent_elsewhere() -> None:
    spec = parse_spec(minimal(shipAck=True))
    assert spec.ship_ack is True
    assert json.loads(spec.to_line())["shipAck"] is True
    assert parse_spec(minimal()).ship_ack is False
    assert "shipAck" not in json.loads(parse_spec(minimal()).to_line())
