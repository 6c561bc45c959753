"""The one log format of crewboard's processes: what a user typed cannot
forge a line or drive a terminal, and JSON lines carry their context."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading

import pytest

from crewboard import logs

HOSTILE = "title\x1b[31m red\r\n2026-01-01 00:00:00,000 INFO forged: line\x07\x9b2J\u2028end"


def make_record(msg: str, *args: object, exc: BaseException | None = None, **extra: object):
    record = logging.LogRecord("crewboard.test", logging.WARNING, __file__, 1, msg, args, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    record.__dict__.update(extra)
    return record


def exc_info_of(exc: BaseException) -> tuple:
    return type(exc), exc, exc.__traceback__


def raised(message: str) -> BaseException:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return exc


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain text, tabs\tstay", "plain text, tabs\tstay"),
        ("a\r\nb", "a\\r\\nb"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("\x00\x07\x7f\x9b", "\\x00\\x07\\x7f\\x9b"),
        ("line\u2028sep\u2029", "line\\u2028sep\\u2029"),
        ("üñí 🙂", "üñí 🙂"),
    ],
)
def test_control_characters_are_escaped(text, escaped):
    assert logs.escape_control(text) == escaped


def test_a_text_line_stays_one_line_whatever_the_message_and_its_arguments():
    line = logs.TextFormatter().format(make_record("job %s: %s", HOSTILE, {"title": HOSTILE}))
    assert "\n" not in line and "\r" not in line
    assert not any(ch in line for ch in "\x1b\x07\x9b\u2028")
    assert "title\\x1b[31m red\\r\\n2026-01-01" in line


def test_a_traceback_is_escaped_and_indented_under_its_record():
    text = logs.TextFormatter().format(make_record("failed", exc=raised(HOSTILE)))
    first, *rest = text.split("\n")
    assert first.endswith("crewboard.test: failed")
    assert rest and all(part.startswith("    ") for part in rest)
    assert "\x1b" not in text and "\r" not in text
    assert any("ValueError: title\\x1b[31m red\\r\\n2026-01-01" in part for part in rest)


def test_the_context_goes_on_the_line():
    formatter = logs.TextFormatter()
    with logs.bind(requestId="req-1", runId=7, jobId=None):
        record = make_record("run ended")
        logs._CaptureContext().filter(record)
    assert formatter.format(record).endswith("run ended [requestId=req-1 runId=7]")
    # Outside the block the context is gone again.
    later = make_record("later")
    logs._CaptureContext().filter(later)
    assert "[" not in formatter.format(later)


def test_json_lines_are_one_object_each_with_context_fields_and_traceback():
    formatter = logs.JsonFormatter("supervisor")
    with logs.bind(requestId="req-2", runId=3):
        record = make_record("job %s", HOSTILE, exc=raised("boom\r\nforged"))
        logs._CaptureContext().filter(record)
    line = formatter.format(record)
    assert "\n" not in line and not any(ch in line for ch in "\x1b\x07\x9b\u2028")
    document = json.loads(line)
    assert document["message"] == f"job {HOSTILE}"
    assert document["process"] == "supervisor" and document["level"] == "WARNING"
    assert document["logger"] == "crewboard.test"
    assert (document["requestId"], document["runId"]) == ("req-2", 3)
    assert document["ts"].endswith("Z")
    assert "ValueError: boom\r\nforged" in document["exc"]


def test_structured_fields_become_the_json_object_and_stay_the_text_message():
    fields = {"method": "GET", "path": "/a\r\nb", "status": 200}
    record = make_record(json.dumps(fields), fields=fields)
    document = json.loads(logs.JsonFormatter("web").format(record))
    assert "message" not in document
    assert (document["method"], document["path"], document["status"]) == ("GET", "/a\r\nb", 200)
    assert json.loads(logs.TextFormatter().format(record).split(": ", 1)[1]) == fields


def test_setup_writes_the_chosen_format_to_the_stream(monkeypatch):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    try:
        for fmt, check in (("json", json.loads), ("text", str)):
            monkeypatch.setenv(logs.FORMAT_ENV, fmt)
            out = io.StringIO()
            logs.setup("test", stream=out)
            logging.getLogger("crewboard.test").info("hello %s", "\x1bthere")
            line = out.getvalue().strip()
            assert "\x1b" not in line
            check(line)
        monkeypatch.setenv(logs.FORMAT_ENV, "yaml")
        out = io.StringIO()
        logs.setup("test", stream=out)
        assert "is not one of" in out.getvalue()
        # An uncaught exception is a record of its own, escaped like the rest.
        sys.excepthook(*exc_info_of(raised("crash\x1b[0m")))
        assert "uncaught exception" in out.getvalue() and "\x1b" not in out.getvalue()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
