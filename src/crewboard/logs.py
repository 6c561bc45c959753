"""The log lines of crewboard's own processes (serve, web, supervisor, the
local model): their format, their context, and the escaping of what users
wrote. A run's own records are another matter (:mod:`crewboard.sessionlog`).

Every process calls :func:`setup` once at start (``crewboard`` does, in
``cli.main``). ``CREWBOARD_LOG_FORMAT`` picks the format: ``text`` (the
default, one line per record) or ``json`` (one JSON object per line, for a
log shipper). ``CREWBOARD_LOG_LEVEL`` picks the level.

Whatever the format, a line cannot be forged or garbled by what a user typed:
a job title with a CR/LF or an ANSI escape in it is written escaped
(``\\n``, ``\\x1b``), so it can neither start a line of its own nor drive the
terminal of whoever reads the log. That holds for the message, its
arguments and a traceback's text alike, because it is done here, by the one
formatter every process uses, and not by each call.

The context of a line (the request id of the HTTP request it serves, and the
run, job or chat session it concerns) lives in :data:`context`, a context
variable: the web sets the request id as a request starts, and the tasks
that run a job or a chat turn :func:`bind` theirs, so every line about that
run carries the request id that created it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

FORMAT_ENV = "CREWBOARD_LOG_FORMAT"
LEVEL_ENV = "CREWBOARD_LOG_LEVEL"
FORMATS = ("text", "json")

# The fields of the line being written, beyond its message: requestId,
# runId, jobId, sessionId. Set through bind(); never mutated in place.
context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "crewboard_log_context", default=MappingProxyType({})
)

# C0 controls but tab, DEL, C1 controls (a terminal reads 0x9b as CSI) and the
# Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r"}
# What json.dumps(ensure_ascii=False) leaves raw but a terminal or a
# line-oriented reader would act on.
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """``text`` with every control character written as an escape: the
    result is one line, and a terminal shows it as it is."""
    return _CONTROL.sub(_escaped, text)


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (None values are left out) to every line written in
    this block, and in tasks started from it."""
    token = context.set({**context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        context.reset(token)


def set_request_id(request_id: str) -> None:
    """Start a request's context (the web, as each request begins; the task
    serving it ends with the request, so there is nothing to reset)."""
    context.set({"requestId": request_id})


def current_request_id() -> str | None:
    """The request id of the line being written, if any."""
    value = context.get().get("requestId")
    return str(value) if value is not None else None


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    text = record.exc_text or ""
    if record.stack_info:
        text = f"{text}\n{formatter.formatStack(record.stack_info)}".strip("\n")
    return text or None


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a call passed as ``extra={"fields": {...}}``."""
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, Mapping) else {}


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [requestId=… runId=…]``, escaped. A
    traceback follows on lines of its own, each indented, so no line of it
    can pass for a record of its own."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        message = escape_control(record.getMessage())
        # What the message holds already (an access log line's requestId) is not repeated.
        fields = _fields(record)
        where = " ".join(f"{k}={v}" for k, v in context_of(record).items() if k not in fields)
        line = f"{self.formatTime(record)} {record.levelname} {record.name}: {message}"
        if where:
            line += f" [{escape_control(where)}]"
        if record.exc_info:
            line += "".join(f"\n    {part}" for part in _traceback_lines(record.exc_info[1]))
        if record.stack_info:
            line += "".join(f"\n    {escape_control(p)}" for p in record.stack_info.split("\n"))
        return line


def _traceback_lines(exc: BaseException | None) -> Iterator[str]:
    """A traceback as escaped lines: a frame's lines are code, split where
    they end; an exception's message (which may quote user input) stays one
    line, its line breaks escaped."""
    if exc is None:
        return
    for chunk in traceback.TracebackException.from_exception(exc).format():
        text = chunk.rstrip("\n")
        if chunk.startswith("  File "):
            yield from (escape_control(part) for part in text.split("\n"))
        else:
            yield escape_control(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``ts``, ``level``,
    ``logger``, ``process``, ``pid``, the context (``requestId``, …), then
    ``message`` (or the record's structured fields, for the access log) and
    ``exc`` with the traceback."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        document: dict[str, Any] = {
            "ts": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "process": self.process,
            "pid": record.process,
            **context_of(record),
        }
        fields = _fields(record)
        if fields:
            document.update(fields)
        else:
            document["message"] = record.getMessage()
        trace = _exception_text(self, record)
        if trace:
            document["exc"] = trace
        text = json.dumps(document, ensure_ascii=False, default=str, separators=(",", ":"))
        return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    """The context a record was written in (captured when it was made, so a
    handler on another thread sees the writer's)."""
    captured = getattr(record, "crewboard_context", None)
    return dict(captured) if isinstance(captured, Mapping) else {}


class _CaptureContext(logging.Filter):
    """Stamp each record with the context of the code that wrote it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "crewboard_context"):
            record.crewboard_context = context.get()
        return True


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("crewboard").critical("uncaught exception", exc_info=(kind, exc, tb))


def log_format(environ: Mapping[str, str] | None = None) -> str:
    """The configured format; an unknown one falls back to text (a process
    must still be able to say what is wrong)."""
    value = (environ if environ is not None else os.environ).get(FORMAT_ENV, "text")
    value = value.strip().lower() or "text"
    return value if value in FORMATS else "text"


def make_formatter(process: str, fmt: str | None = None) -> logging.Formatter:
    return JsonFormatter(process) if (fmt or log_format()) == "json" else TextFormatter()


def setup(process: str, *, stream: Any = None) -> None:
    """Send this process's log to stderr in the configured format and level,
    replacing whatever handlers the root logger had. ``process`` names it in
    JSON lines (``serve``, ``web``, ``supervisor``, …)."""
    level_name = os.environ.get(LEVEL_ENV, "INFO").upper()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(process))
    handler.addFilter(_CaptureContext())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level_name, logging.INFO))
    # A crash's traceback is a record too, in the same format, not raw stderr.
    sys.excepthook = _log_uncaught
    threading.excepthook = lambda args: _log_uncaught(
        args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback
    )
    if os.environ.get(FORMAT_ENV) and log_format() != os.environ[FORMAT_ENV].strip().lower():
        logging.getLogger("crewboard").warning(
            "%s=%r is not one of %s; writing text", FORMAT_ENV, os.environ[FORMAT_ENV], FORMATS
        )
