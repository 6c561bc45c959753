"""The agent loop in-process on the offline model: the records it writes, tool
calls and their errors, handoffs, blocking, the step limit and artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crewboard.runner.loop import EXIT_BLOCKED, EXIT_ERROR, EXIT_OK, AgentLoop
from crewboard.runner.providers import ProviderError
from crewboard.runner.providers.offline import OfflineTransport
from crewboard.runner.session_log import RunLog
from crewboard.runner.spec import parse_spec
from crewboard.runner.tools.base import ToolContext
from crewboard.sessionlog import read_records
from tests.support.fake_openai import Reply

AGENTS = {
    "triage": {
        "name": "Triage",
        "instructions": "Route it.",
        "tools": ["block"],
        "handoffs": ["writer"],
    },
    "writer": {
        "name": "Writer",
        "instructions": "Write it.",
        "tools": ["read_file", "write_file", "list_files", "save_artifact"],
    },
}


def run(
    tmp_path: Path, prompt: str, transport: Any = None, **extra: Any
) -> tuple[int, list[dict[str, Any]]]:
    raw = {
        "runId": "1",
        "agentId": extra.pop("agentId", "writer"),
        "agents": AGENTS,
        "model": {
            "spec": "offline:scripted",
            "provider": "offline",
            "name": "scripted",
            "apiKey": "sk-offline-" + "secret",
        },
        "prompt": prompt,
        "workspace": str(tmp_path / "ws"),
        "logPath": str(tmp_path / "run.jsonl"),
        "artifactDir": str(tmp_path / "artifacts"),
        **extra,
    }
    spec = parse_spec(raw)
    secrets = (spec.model.api_key,) if spec.model.api_key else ()
    log = RunLog(spec.log_path, secrets=secrets)
    ctx = ToolContext(spec.workspace, spec.artifact_dir, spec.limits, secrets=secrets)
    spec.workspace.mkdir(parents=True, exist_ok=True)
    code = AgentLoop(spec, log, transport or OfflineTransport(), ctx).run()
    return code, read_records(spec.log_path)


def types(records: list[dict[str, Any]]) -> list[str]:
    return [r["type"] for r in records if r["type"] != "text"]


def test_a_plain_prompt_is_one_step_to_a_final_result(tmp_path: Path) -> None:
    code, records = run(tmp_path, "Write a haiku about logs")
    assert code == EXIT_OK
    assert types(records) == ["agent_start", "agent_end", "final_result"]
    final = records[-1]
    assert "> Write a haiku about logs" in final["text"]
    assert final["text"] == "".join(r["text"] for r in records if r["type"] == "text")
    assert final["agentName"] == "writer"
    assert final["usage"]["requests"] == 1 and final["usage"]["totalTokens"] > 0


def test_parallel_tool_calls_are_logged_with_call_ids_and_fed_back(tmp_path: Path) -> None:
    prompt = "\n".join(
        [
            '/tool write_file {"path": "a.txt", "content": "alpha"}',
            '/tool write_file {"path": "b.txt", "content": "beta"}',
            '/tool read_file {"path": "a.txt"}',
        ]
    )
    code, records = run(tmp_path, prompt)
    assert code == EXIT_OK
    starts = [r for r in records if r["type"] == "agent_tool_start"]
    ends = {r["callId"]: r for r in records if r["type"] == "agent_tool_end"}
    assert [s["toolName"] for s in starts] == ["write_file", "write_file", "read_file"]
    assert set(ends) == {s["callId"] for s in starts}
    assert json.loads(starts[0]["toolArgumentsStr"]) == {"path": "a.txt", "content": "alpha"}
    assert (tmp_path / "ws" / "b.txt").read_text() == "beta"
    assert "wrote 5 bytes" in records[-1]["text"], "the model saw the results"
    assert records[-1]["usage"]["requests"] == 2


def test_tool_errors_go_back_to_the_model_and_the_run_goes_on(tmp_path: Path) -> None:
    prompt = "\n".join(
        [
            '/tool read_file {"path": "../../etc/passwd"}',
            "/tool read_file {not json",
            '/tool shell {"command": "id"}',
            '/tool read_file {"path": "missing.txt"}',
        ]
    )
    code, records = run(tmp_path, prompt)
    assert code == EXIT_OK
    ends = [r for r in records if r["type"] == "agent_tool_end"]
    assert len(ends) == 4 and all(e["isError"] for e in ends)
    results = " | ".join(e["result"] for e in ends)
    assert "'..' is not allowed" in results
    assert "not valid JSON" in results
    assert "'shell' is not one of your tools" in results
    assert "does not exist" in results
    assert records[-1]["type"] == "final_result"


def test_a_handoff_switches_the_agent_and_later_directives_are_the_new_agents(
    tmp_path: Path,
) -> None:
    prompt = (
        'Please write\n/handoff writer\n/tool write_file {"path": "w.txt", "content": "by writer"}'
    )
    code, records = run(tmp_path, prompt, agentId="triage")
    assert code == EXIT_OK
    assert types(records) == [
        "agent_start",
        "handoff",
        "agent_end",
        "agent_start",
        "agent_tool_start",
        "agent_tool_end",
        "agent_end",
        "final_result",
    ]
    handoff = next(r for r in records if r["type"] == "handoff")
    assert (handoff["agentName"], handoff["toAgentName"]) == ("triage", "writer")
    tool_start = next(r for r in records if r["type"] == "agent_tool_start")
    assert tool_start["agentName"] == "writer"
    assert records[-1]["agentName"] == "writer"


def test_a_handoff_to_an_agent_not_in_the_presets_handoffs_is_refused(tmp_path: Path) -> None:
    code, records = run(tmp_path, "/tool transfer_to_triage {}")
    assert code == EXIT_OK
    assert "handoff" not in types(records)
    assert "you cannot hand off to 'triage'" in records[-1]["text"]


def test_every_job_agent_can_block_whatever_its_preset_lists(tmp_path: Path) -> None:
    """The writer preset has no block tool; in a job it blocks all the same."""
    code, records = run(tmp_path, "/block which customer?", kind="job")
    assert code == EXIT_BLOCKED
    assert records[-1]["type"] == "blocked" and records[-1]["reason"] == "which customer?"


def test_in_a_chat_a_preset_without_block_says_what_would_work(tmp_path: Path) -> None:
    code, records = run(tmp_path, "/block which customer?", kind="chat")
    assert code == EXIT_OK
    assert "agent_tool_start" not in types(records)
    assert (
        "`/block` needs a preset with the block tool, such as coder or triage"
        in (records[-1]["text"])
    )


def test_block_ends_the_run_blocked(tmp_path: Path) -> None:
    code, records = run(tmp_path, "/block I need the customer's name", agentId="triage")
    assert code == EXIT_BLOCKED
    assert records[-1]["type"] == "blocked"
    assert records[-1]["reason"] == "I need the customer's name"


def test_the_step_limit_ends_the_run_in_error(tmp_path: Path) -> None:
    prompt = "\n".join("/tool list_files {}\n/sleep 0" for _ in range(5))
    code, records = run(tmp_path, prompt, limits={"maxSteps": 3})
    assert code == EXIT_ERROR
    assert records[-1]["type"] == "error"
    assert "within 3 steps" in records[-1]["message"]
    assert sum(r["type"] == "agent_tool_start" for r in records) == 3


def test_a_provider_failure_is_the_error_record(tmp_path: Path) -> None:
    code, records = run(tmp_path, "/fail the model is overloaded")
    assert code == EXIT_ERROR
    assert records[-1]["type"] == "error"
    assert records[-1]["message"] == "offline model: the model is overloaded"


def test_the_jobs_artifact_is_saved_from_the_final_text_when_the_run_saved_none(
    tmp_path: Path,
) -> None:
    code, records = run(tmp_path, "Draft the brief", artifact="brief.md")
    assert code == EXIT_OK
    assert (tmp_path / "artifacts" / "brief.md").read_text() == records[-1]["text"]
    assert records[-1]["artifacts"] == ["brief.md"]


def test_an_artifact_the_run_saved_is_kept(tmp_path: Path) -> None:
    prompt = "/artifact brief.md\n# The real brief"
    code, _ = run(tmp_path, prompt, artifact="brief.md")
    assert code == EXIT_OK
    assert (tmp_path / "artifacts" / "brief.md").read_text() == "# The real brief"


def test_usage_is_summed_over_steps_from_a_real_shaped_stream(tmp_path: Path) -> None:
    class Scripted:
        def __init__(self) -> None:
            self.replies = [
                Reply.tools([("list_files", "{}")], usage=(20, 8)),
                Reply.text("done", usage=(30, 2)),
            ]
            self.requests: list[dict[str, Any]] = []

        def stream(self, request: dict[str, Any]) -> Any:
            self.requests.append(request)
            return iter(self.replies.pop(0).events)

        def close(self) -> None:
            pass

    transport = Scripted()
    code, records = run(tmp_path, "go", transport=transport)
    assert code == EXIT_OK
    assert records[-1]["usage"] == {
        "requests": 2,
        "inputTokens": 50,
        "outputTokens": 10,
        "totalTokens": 60,
    }
    first = transport.requests[0]
    assert first["messages"][0] == {"role": "system", "content": "Write it."}
    assert first["stream_options"] == {"include_usage": True}
    assert {t["function"]["name"] for t in first["tools"]} == {
        "read_file",
        "write_file",
        "list_files",
        "save_artifact",
        "block",  # every job agent has it
    }
    second = transport.requests[1]["messages"]
    assert second[-2]["tool_calls"][0]["id"] == "call_fake_0"
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == "call_fake_0"


def test_secrets_never_reach_the_log(tmp_path: Path) -> None:
    class Leaky:
        def stream(self, request: dict[str, Any]) -> Any:
            raise ProviderError("bad key sk-offline-secret")

        def close(self) -> None:
            pass

    code, records = run(tmp_path, "hi", transport=Leaky())
    assert code == EXIT_ERROR
    assert "sk-offline-secret" not in (tmp_path / "run.jsonl").read_text()
    assert records[-1]["message"] == "bad key ***"


# --- output caps ------------------------------------------------------------------


class Flood:
    """A model that answers with ``total`` characters of text in ``piece``-sized
    deltas, after a first step of tool calls when ``tool_first``."""

    def __init__(self, total: int, piece: int = 100, tool_first: bool = False) -> None:
        self.total = total
        self.piece = piece
        self.tool_first = tool_first
        self.calls = 0

    def stream(self, request: dict[str, Any]):
        self.calls += 1
        for n in range(self.total // self.piece):
            yield {"choices": [{"index": 0, "delta": {"content": chr(97 + n % 26) * self.piece}}]}
        if self.tool_first and self.calls == 1:
            call = {"index": 0, "id": "c1", "function": {"name": "list_files", "arguments": "{}"}}
            yield {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
            yield {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
            return
        yield {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


def whole_text(total: int, piece: int = 100) -> str:
    return "".join(chr(97 + n % 26) * piece for n in range(total // piece))


def test_a_result_over_the_cap_keeps_its_beginning_and_the_rest_is_an_artifact(tmp_path):
    limits = {"maxResultBytes": 1000}
    code, records = run(tmp_path, "Go on", Flood(5000), limits=limits)
    assert code == EXIT_OK
    logged = "".join(r["text"] for r in records if r["type"] == "text")
    assert logged.startswith(whole_text(5000)[:1000]) and len(logged) < 1300
    assert "limits.maxResultBytes" in logged
    final = records[-1]
    assert final["type"] == "final_result" and final["truncated"] is True
    assert final["text"].startswith(whole_text(5000)[:1000])
    assert "5000 bytes" in final["text"] and "'result.md'" in final["text"]
    assert len(final["text"].encode()) < 1400
    assert final["fullChars"] == 5000 and final["fullArtifact"] == "result.md"
    assert final["artifacts"] == ["result.md"]
    assert (tmp_path / "artifacts" / "result.md").read_text() == whole_text(5000)


def test_a_result_under_the_cap_is_whole(tmp_path):
    code, records = run(tmp_path, "Go on", Flood(900), limits={"maxResultBytes": 1000})
    assert code == EXIT_OK
    assert records[-1]["text"] == whole_text(900) and "truncated" not in records[-1]


def test_a_deliverable_written_from_the_answer_holds_it_whole(tmp_path):
    code, records = run(
        tmp_path, "Go on", Flood(5000), limits={"maxResultBytes": 1000}, artifact="brief.md"
    )
    assert code == EXIT_OK
    final = records[-1]
    assert final["fullArtifact"] == "brief.md" and final["artifacts"] == ["brief.md"]
    assert (tmp_path / "artifacts" / "brief.md").read_text() == whole_text(5000)
    assert not (tmp_path / "artifacts" / "result.md").exists()


def test_a_step_over_the_cap_is_saved_whole_and_the_run_goes_on(tmp_path):
    transport = Flood(3000, tool_first=True)
    code, records = run(tmp_path, "Go on", transport, limits={"maxResultBytes": 1000})
    assert code == EXIT_OK and transport.calls == 2
    assert (tmp_path / "artifacts" / "step-1.md").read_text() == whole_text(3000)
    assert records[-1]["fullArtifact"] == "result.md"
    assert records[-1]["artifacts"] == ["result.md", "step-1.md"]


def test_a_log_over_its_cap_ends_the_run_failed_with_the_reason(tmp_path):
    limits = {"maxResultBytes": 10_000_000, "maxLogBytes": 20_000}
    code, records = run(tmp_path, "Go on", Flood(1_000_000), limits=limits)
    assert code == EXIT_ERROR
    assert records[-1]["type"] == "error" and "limits.maxLogBytes" in records[-1]["message"]
    assert (tmp_path / "run.jsonl").stat().st_size < 25_000
