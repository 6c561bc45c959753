"""The session log survives its own damage: appends start on a line of their
own after a torn last line; readers skip torn, binary, non-JSON, non-object
and over-long lines, number records by position whatever their stored seq
says, and say how much damage they met in one warning per reader."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from crewboard import sessionlog
from crewboard.sessionlog import (
    MAX_RECORD_BYTES,
    LogCursor,
    LogWriter,
    ensure_terminal,
    last_record,
    read_records,
)

TEN_MB = 10 * 1024 * 1024


def line(seq: object, type: str = "text", **fields: object) -> bytes:
    return json.dumps(
        {"seq": seq, "ts": "2026-01-01T00:00:00.000Z", "type": type, **fields}
    ).encode()


def write_lines(path: Path, *lines: bytes, end: bytes = b"\n") -> None:
    path.write_bytes(b"\n".join(lines) + end)


def damage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == sessionlog.__name__ and r.levelno == logging.WARNING
    ]


# --- appending ---------------------------------------------------------------


def test_a_terminal_record_after_a_torn_line_is_on_a_line_of_its_own(tmp_path, caplog):
    path = tmp_path / "run.jsonl"
    write_lines(path, line(1, "user_message", text="hi"), line(2, text="a"), end=b"\n")
    with path.open("ab") as f:
        f.write(b'{"seq":3,"ts":"2026-01-01T00:00:00.000Z","type":"text","te')  # killed mid-line
    written = ensure_terminal(path, "the runner was killed")
    assert written is not None and written["seq"] == 3
    assert path.read_bytes().endswith(b"\n") and path.read_bytes().count(b"\n") == 4
    last = last_record(path)
    assert last is not None and last["type"] == "error" and last["seq"] == 3
    records = read_records(path)
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[-1]["message"] == "the runner was killed"
    # Closed now: a second call writes nothing.
    assert ensure_terminal(path, "again") is None


def test_every_append_starts_a_line_of_its_own(tmp_path):
    path = tmp_path / "chat.jsonl"
    with LogWriter(path) as writer:
        writer.append("user_message", text="one")
        with path.open("ab") as f:
            f.write(b"\x00\xff torn")
        writer.append("text", text="two")
        writer.append("final_result", text="three")
    assert [r["text"] for r in read_records(path)] == ["one", "two", "three"]
    assert path.read_bytes().splitlines()[1] == b"\x00\xff torn"


def test_a_writer_numbers_on_from_the_records_readers_see(tmp_path):
    path = tmp_path / "chat.jsonl"
    write_lines(path, line(1), b"garbage", line(7), line("x"))
    with LogWriter(path) as writer:
        assert writer.append("final_result", text="done")["seq"] == 4
    assert [r["seq"] for r in read_records(path)] == [1, 2, 3, 4]
    assert json.loads(path.read_bytes().splitlines()[-1])["seq"] == 4


# --- reading -----------------------------------------------------------------


def damaged_log(path: Path) -> None:
    """Every kind of damage, then the run's end."""
    write_lines(
        path,
        line(1, "user_message", text="question"),
        b'{"seq":2,"type":"te',  # torn
        b"\x00\x01\xfe\xff binary \x80",
        b"not json at all",
        b"[1, 2, 3]",
        b'"a string"',
        line(2, text="after the garbage"),
        line("two", text="a seq that is not a number"),
        line(2.5, text="a float seq"),
        line(None, text="a null seq"),
        line(True, text="a boolean seq"),
        line(3, text="a duplicate seq"),
        line(10**12, text="a jump"),
        line(4, text="back down"),
        b"{" * 100_000,  # deeper than the parser goes
        line(99, "final_result", text="the answer"),
    )


def test_readers_skip_malformed_lines_and_renumber_bad_seqs(tmp_path, caplog):
    path = tmp_path / "run.jsonl"
    damaged_log(path)
    caplog.set_level(logging.WARNING)
    records = read_records(path)
    texts = [r["text"] for r in records]
    assert texts[0] == "question" and texts[-1] == "the answer"
    assert len(records) == 10 and [r["seq"] for r in records] == list(range(1, 11))
    assert records[-1]["type"] == "final_result"
    # One warning for the whole read, with the counts.
    (warning,) = damage_warnings(caplog)
    assert "skipped 6 malformed line(s)" in warning and "renumbered 8 record(s)" in warning


def test_resuming_after_a_seq_gives_the_records_after_it(tmp_path):
    path = tmp_path / "run.jsonl"
    damaged_log(path)
    everything = read_records(path)
    for after in range(len(everything) + 1):
        assert read_records(path, after) == everything[after:]
    last = last_record(path)
    assert last is not None and last == everything[-1] and last["seq"] == 10


def test_a_ten_megabyte_line_is_skipped_whole(tmp_path, caplog):
    path = tmp_path / "run.jsonl"
    huge_record = line(2, text="x" * TEN_MB)
    assert len(huge_record) > MAX_RECORD_BYTES
    write_lines(
        path,
        line(1, "user_message", text="q"),
        huge_record,
        b"\xff" * TEN_MB,
        line(4, "final_result", text="done"),
    )
    caplog.set_level(logging.WARNING)
    records = read_records(path)
    assert [(r["seq"], r["type"]) for r in records] == [(1, "user_message"), (2, "final_result")]
    last = last_record(path)
    assert last is not None and last["type"] == "final_result" and last["seq"] == 2
    assert all("skipped 2 malformed" in w for w in damage_warnings(caplog))


def test_a_cursor_reads_damage_in_pieces_as_the_whole_file_does(tmp_path):
    path = tmp_path / "run.jsonl"
    damaged_log(path)
    with path.open("ab") as f:
        f.write(
            b"\xff" * (MAX_RECORD_BYTES + 5) + b"\n" + line(11, "user_message", text="late") + b"\n"
        )
    cursor = LogCursor(path)
    got = []
    # Small reads split every line, the over-long one into many pieces.
    size = path.stat().st_size
    while cursor.offset < size:
        got.extend(cursor.read_new(max_bytes=4099))
        assert len(cursor._reading._partial) <= MAX_RECORD_BYTES
    assert got == read_records(path)
    assert got[-1]["text"] == "late" and got[-1]["seq"] == 11
    assert (cursor.skipped, cursor.renumbered) == (7, 8)


def test_a_cursor_keeps_a_torn_tail_until_its_line_is_complete(tmp_path, caplog):
    path = tmp_path / "run.jsonl"
    write_lines(path, line(1, "user_message", text="q"))
    cursor = LogCursor(path)
    assert [r["seq"] for r in cursor.read_new()] == [1]
    with path.open("ab") as f:
        f.write(b'{"seq":2,"ts":"2026-01-01T00:00:00.000Z","ty')
    assert cursor.read_new() == []
    # The writer died; the supervisor closes the log.
    ensure_terminal(path, "the runner was killed")
    (closing,) = cursor.read_new()
    assert closing["type"] == "error" and closing["seq"] == 2
    caplog.set_level(logging.WARNING)
    cursor.report()
    cursor.report()
    (warning,) = damage_warnings(caplog)
    assert "skipped 1 malformed line(s), renumbered 0" in warning


def test_a_whole_last_record_without_its_newline_counts(tmp_path):
    path = tmp_path / "run.jsonl"
    write_lines(path, line(1, "user_message", text="q"), line(2, "final_result", text="a"), end=b"")
    assert [r["seq"] for r in read_records(path)] == [1, 2]
    last = last_record(path)
    assert last is not None and last["type"] == "final_result"
    with LogWriter(path) as writer:
        assert writer.append("user_message", text="next turn")["seq"] == 3
    assert [r["seq"] for r in read_records(path)] == [1, 2, 3]


def test_last_record_reads_on_as_the_log_grows_and_sees_a_rewrite(tmp_path):
    path = tmp_path / "run.jsonl"
    with LogWriter(path) as writer:
        writer.append("user_message", text="q")
        assert last_record(path)["seq"] == 1
        writer.append("text", text="a")
        assert last_record(path) == {**read_records(path)[-1]}
        writer.append("final_result", text="b")
        assert last_record(path)["type"] == "final_result"
    # Rewritten in place, longer than before: read again from the start.
    write_lines(path, line(1, "user_message", text="other " * 100), line(2, "blocked", reason="r"))
    last = last_record(path)
    assert last is not None and last["type"] == "blocked" and last["seq"] == 2
    assert last_record(tmp_path / "missing.jsonl") is None
