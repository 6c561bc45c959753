"""The log of a live `crewboard serve`, as an operator's log shipper reads
it: with ``CREWBOARD_LOG_FORMAT=json`` every line of every process is one
JSON object, and the id of the request that started a job or a chat turn
is on the lines about its run and in the run's own log; in either format a
job's input cannot put a control character on the operator's terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.served import Served, serving
from tests.support.waits import wait_until

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board

# The offline model fails with the rest of the line as the provider's error,
# which the supervisor logs.
HOSTILE = "/fail \x1b[31mred\x07 \x9b2J alert"


def start_job(served: Served, request_id: str) -> int:
    created = served.client("user").post(
        "/api/jobs",
        json={"templateId": "echo", "inputs": {"prompt": HOSTILE}},
        headers={"X-Request-Id": request_id},
    )
    assert created.status_code == 201, created.text
    assert created.headers["X-Request-Id"] == request_id
    job_id = created.json()["jobIds"][0]

    def ended() -> bool:
        ((status,),) = served.query("SELECT status FROM job WHERE id = ?", (job_id,))
        return status == "blocked"

    wait_until(ended, 30, "the job to fail")
    return job_id


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_json_lines_carry_the_request_id_into_the_runs_it_started(tmp_path):
    with serving(tmp_path, {"CREWBOARD_LOG_FORMAT": "json"}) as served:
        job_id = start_job(served, "req-job-1")
        # As the board keeps it (read while the server's board is there).
        ((stored,),) = served.query("SELECT request_id FROM job WHERE id = ?", (job_id,))
        ((run_id,),) = served.query("SELECT id FROM run WHERE job_id = ?", (job_id,))
        user = served.client("user")
        session = user.post("/api/session/create", json={"agent": "assistant"}).json()
        with user.stream(
            "POST",
            f"/api/session/newUserMessage/{session['id']}",
            json={"message": "Hello there."},
            headers={"X-Request-Id": "req-chat-1"},
        ) as turn:
            assert turn.status_code == 200
            turn.read()
        # A request id that is not plain is replaced, not written into logs.
        odd = user.get("/auth/me", headers={"X-Request-Id": "two words"})
        assert odd.headers["X-Request-Id"] not in ("", "two words")
    lines = served.proc.output().splitlines()
    assert "\x1b" not in "\n".join(lines)
    objects = [json.loads(line) for line in lines]  # each line one object
    assert all({"ts", "level", "logger", "process", "pid"} <= set(o) for o in objects)
    assert {"serve", "web", "supervisor"} <= {o["process"] for o in objects}

    about_job = [o for o in objects if o.get("requestId") == "req-job-1"]
    access = [o for o in about_job if o["logger"] == "crewboard.access"]
    assert [(o["method"], o["path"], o["status"]) for o in access] == [("POST", "/api/jobs", 201)]
    ended = [o for o in about_job if o["process"] == "supervisor"]
    assert ended and all(o["jobId"] == job_id for o in ended)
    assert any("\x1b[31mred\x07" in o["message"] for o in ended)  # kept, escaped on the line

    # Stored with the job, and written by its runner on its first and last record.
    assert stored == "req-job-1"
    run_log = records(served.home / "logs" / "runs" / f"{run_id}.jsonl")
    assert run_log[0]["type"] == "user_message" and run_log[0]["requestId"] == "req-job-1"
    assert run_log[-1]["type"] == "error" and run_log[-1]["requestId"] == "req-job-1"

    (chat_log,) = (served.home / "logs" / "chat").glob("*.jsonl")
    turn_records = records(chat_log)
    assert turn_records[0]["type"] == "user_message"
    assert turn_records[0]["requestId"] == turn_records[-1]["requestId"] == "req-chat-1"


def test_text_lines_escape_what_a_job_input_holds(tmp_path):
    with serving(tmp_path) as served:
        start_job(served, "req-text-1")
    output = served.proc.output()
    assert not any(ch in output for ch in "\x1b\x07\x9b")
    (line,) = [line for line in output.splitlines() if "[requestId=req-text-1 runId=" in line]
    assert "offline model: \\x1b[31mred\\x07 \\x9b2J alert" in line
