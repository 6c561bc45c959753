"""The log side of chat turns, as pure functions over JSONL files: the
context a new turn is given, and how a turn whose runner died is closed."""

from __future__ import annotations

from crewboard.sessionlog import LogWriter, read_records, split_turns
from crewboard.web.chat import close_open_turn, end_turn, history_messages


def write(path, *records):
    with LogWriter(path) as writer:
        for type_, fields in records:
            writer.append(type_, **fields)


def test_history_keeps_finished_turns_only(tmp_path):
    log = tmp_path / "chat.jsonl"
    write(
        log,
        ("user_message", {"text": "q1"}),
        ("agent_start", {"agentName": "a"}),
        ("text", {"agentName": "a", "text": "partial"}),
        ("final_result", {"text": "a1", "agentName": "a"}),
        ("user_message", {"text": "q2"}),
        ("error", {"message": "model down"}),
        ("user_message", {"text": "q3"}),
        ("blocked", {"reason": "needs a human"}),
        ("user_message", {"text": "q4"}),
        ("final_result", {"text": "a4", "agentName": "b"}),
        ("user_message", {"text": "q5 still open"}),
    )
    assert history_messages(read_records(log)) == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q4"},
        {"role": "assistant", "content": "a4"},
    ]


def test_history_keeps_the_latest_turns(tmp_path):
    log = tmp_path / "chat.jsonl"
    write(
        log,
        *[
            record
            for i in range(5)
            for record in (
                ("user_message", {"text": f"q{i}"}),
                ("final_result", {"text": f"a{i}"}),
            )
        ],
    )
    messages = history_messages(read_records(log), max_turns=2)
    assert [m["content"] for m in messages] == ["q3", "a3", "q4", "a4"]
    assert history_messages(read_records(log), max_turns=0) == []


def test_end_turn_adds_an_error_when_the_runner_left_none(tmp_path):
    log = tmp_path / "chat.jsonl"
    write(log, ("user_message", {"text": "q1"}), ("final_result", {"text": "a1"}))
    write(log, ("user_message", {"text": "q2"}), ("agent_start", {"agentName": "a"}))
    record = end_turn(log, 2, "q2", "the runner was killed by SIGKILL")
    assert record is not None and record["type"] == "error" and record["seq"] == 5
    # Already closed: nothing more is written.
    assert end_turn(log, 2, "q2", "again") is None
    assert [len(t) for t in split_turns(read_records(log))] == [2, 3]


def test_end_turn_of_a_runner_that_wrote_nothing_keeps_the_question(tmp_path):
    log = tmp_path / "chat.jsonl"
    write(log, ("user_message", {"text": "q1"}), ("final_result", {"text": "a1"}))
    end_turn(log, 2, "q2", "the turn's runner could not be started")
    records = read_records(log)
    assert [(r["seq"], r["type"]) for r in records[2:]] == [(3, "user_message"), (4, "error")]
    assert records[2]["text"] == "q2"
    # A brand-new log works the same.
    fresh = tmp_path / "fresh.jsonl"
    end_turn(fresh, 0, "hello", "stopped")
    assert [r["type"] for r in read_records(fresh)] == ["user_message", "error"]


def test_close_open_turn(tmp_path):
    log = tmp_path / "chat.jsonl"
    assert close_open_turn(log, "interrupted") is None
    assert not log.exists()
    write(log, ("user_message", {"text": "q1"}), ("text", {"text": "half"}))
    closed = close_open_turn(log, "interrupted")
    assert closed is not None and closed["message"] == "interrupted"
    assert close_open_turn(log, "interrupted") is None
