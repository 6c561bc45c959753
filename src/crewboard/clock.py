"""Time as the product shows it: timezone-aware UTC, written as RFC 3339 with
milliseconds and a ``Z`` everywhere (logs, API, board)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime | None) -> str | None:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-28T21:00:00.000Z``."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def iso_now() -> str:
    return iso(utcnow())  # type: ignore[return-value]


def parse_iso(text: str) -> datetime:
    """Parse an RFC 3339 time that carries an offset; a naive time, or one
    whose UTC falls outside years 1-9999 (``0001-01-01T00:00:00+14:00``), is
    a ValueError."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("time must carry a UTC offset, e.g. 2026-11-28T21:00:00Z")
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        raise ValueError("time is out of range: in UTC it must fall in years 1 to 9999") from None
