"""Reading query parameters: booleans, bounded integers and choices. A value
that cannot be read is a 422 naming the parameter, never a silent default."""

from __future__ import annotations

from collections.abc import Iterable

from quart import request

from crewboard.errors import ValidationFailed

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def flag(name: str, default: bool = False) -> bool:
    """``?name=true|false|1|0`` (absent means ``default``)."""
    raw = request.args.get(name)
    if raw is None:
        return default
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValidationFailed(f"{name} must be true or false", {name: "must be true or false"})


def integer(name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not (text.isascii() and text.lstrip("-").isdigit() and len(text) <= 19):
        raise ValidationFailed(f"{name} must be an integer", {name: "must be an integer"})
    value = int(text)
    if not minimum <= value <= maximum:
        message = f"must be between {minimum} and {maximum}"
        raise ValidationFailed(f"{name} {message}", {name: message})
    return value


def choice(name: str, choices: Iterable[str]) -> str | None:
    """One of ``choices``, or None when the parameter is absent."""
    raw = request.args.get(name)
    if raw is None:
        return None
    allowed = list(choices)
    if raw not in allowed:
        message = "must be one of " + ", ".join(allowed)
        raise ValidationFailed(f"{name} {message}", {name: message})
    return raw


def text(name: str, *, max_length: int) -> str | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw or len(raw) > max_length:
        message = f"must be 1 to {max_length} characters"
        raise ValidationFailed(f"{name} {message}", {name: message})
    return raw
