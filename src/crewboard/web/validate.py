"""Reading request bodies and checking their fields. A body that is not JSON,
or not an object, or nested deeper than :data:`~crewboard.textcheck.MAX_DEPTH`,
is a 400; wrong fields are one 422 naming every bad field. Every body is read
through :func:`json_object`, which also refuses, anywhere in it, the strings
no database can store (NUL, lone surrogates), so no route has to think of
them; one-line fields also refuse bidirectional controls (:meth:`Fields.string`)."""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

from quart import request

from crewboard import textcheck
from crewboard.errors import BadRequest, ValidationFailed


async def json_object(*, allow_form: bool = False, allow_empty: bool = False) -> dict[str, Any]:
    """The request body as a JSON object (or a form, when allowed)."""
    content_type = (request.mimetype or "").lower()
    if allow_form and content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.form
        return _checked({k: form.get(k) for k in form})
    raw = await request.get_data(cache=True)
    if not raw.strip():
        if allow_empty:
            return {}
        raise BadRequest("the request needs a JSON object body")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise _too_deep("") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("the request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return _checked(body)


def _too_deep(path: str) -> BadRequest:
    message = f"nests deeper than {textcheck.MAX_DEPTH} levels"
    return BadRequest(f"the request body {message}", {"fields": {path or "body": message}})


def _checked(body: dict[str, Any]) -> dict[str, Any]:
    """``body``, once nothing in it is too deep or impossible to store."""
    try:
        problems = textcheck.unstorable_fields(body)
    except textcheck.TooDeep as exc:
        raise _too_deep(exc.path) from None
    if problems:
        raise ValidationFailed("some fields hold characters that cannot be stored", problems)
    return body


def has_control_chars(text: str, allow_newlines: bool = False) -> bool:
    for ch in text:
        if allow_newlines and ch in "\n\r\t":
            continue
        if unicodedata.category(ch) in ("Cc", "Cs"):
            return True
    return False


BIDI_REFUSED = "must not contain bidirectional controls (U+202A-202E, U+2066-2069)"


class Fields:
    """Collects field errors while reading values, then raises them together.

    >>> f = Fields(body); name = f.string("name", max_length=100); f.done()
    """

    def __init__(self, body: dict[str, Any], *, allowed: set[str] | None = None) -> None:
        self.body = body
        self.errors: dict[str, str] = {}
        # Each too-long field's limit and actual length, so a client can say
        # "150,000 characters, the limit is 100,000" without parsing text.
        self.limits: dict[str, dict[str, int]] = {}
        if allowed is not None:
            for key in body:
                if key not in allowed:
                    self.errors[str(key)[:100]] = "unknown field"

    def string(
        self,
        key: str,
        *,
        required: bool = True,
        max_length: int = 1000,
        min_length: int = 1,
        multiline: bool = False,
        default: str | None = None,
    ) -> str | None:
        value = self.body.get(key)
        if value is None:
            if required:
                self.errors[key] = "is required"
            return default
        if not isinstance(value, str):
            self.errors[key] = "must be a string"
            return default
        if not multiline:
            value = value.strip()
        if len(value) < min_length:
            self.errors[key] = (
                "must not be empty"
                if min_length == 1
                else (f"must be at least {min_length} characters")
            )
        elif len(value) > max_length:
            self.errors[key] = f"must be at most {max_length} characters"
            self.limits[key] = {"maxLength": max_length, "length": len(value)}
        elif has_control_chars(value, allow_newlines=multiline):
            self.errors[key] = "must not contain control characters"
        elif not multiline and textcheck.has_bidi_controls(value):
            self.errors[key] = BIDI_REFUSED
        return value

    def integer(self, key: str, *, minimum: int | None = None, maximum: int | None = None):
        value = self.body.get(key)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()))
        ):
            self.errors[key] = "must be an integer"
            return None
        value = int(value)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.errors[key] = f"must be between {minimum} and {maximum}"
        return value

    def obj(self, key: str, *, required: bool = True) -> dict[str, Any] | None:
        value = self.body.get(key)
        if value is None:
            if required:
                self.errors[key] = "is required"
            return {} if not required else None
        if not isinstance(value, dict):
            self.errors[key] = "must be an object"
            return None
        return value

    def present(self, key: str) -> Any:
        """The value of ``key`` as sent (the board checks it further); "is
        required" if it is missing."""
        if key not in self.body:
            self.errors[key] = "is required"
        return self.body.get(key)

    def fail(self, key: str, message: str) -> None:
        self.errors.setdefault(key, message)

    def done(self, message: str | None = None) -> None:
        """Raise the errors collected, if any; the message names the field
        when only one is wrong."""
        if self.errors:
            if message is None:
                message = (
                    "{}: {}".format(*next(iter(self.errors.items())))
                    if len(self.errors) == 1
                    else "some fields are invalid"
                )
            limits = {key: self.limits[key] for key in self.errors if key in self.limits}
            raise ValidationFailed(message, self.errors, limits=limits)
