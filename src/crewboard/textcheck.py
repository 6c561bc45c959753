"""Values from outside that the product cannot keep or show, found before
they are stored: JSON nested too deep to walk, strings no database takes
(NUL; lone surrogates, which UTF-8 cannot encode) and, in one-line names,
bidirectional controls that make text read differently than it is stored.

The web checks every request body here (``web/validate.py``) and names the
field; the scheduler checks a schedule's stored inputs before it spawns from
them (``supervisor/scheduler.py``), so inputs stored before these checks
existed pause their schedule instead of failing every fire.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# Deep enough for any real body; shallow enough that nothing that walks
# (rendering, JSON encoding, peewee) can run out of stack.
MAX_DEPTH = 32
# Fields named in one answer; a body with more bad strings is refused all the same.
MAX_REPORTED = 20

# NUL (PostgreSQL text cannot hold it) and UTF-16 surrogates (a JSON
# "\ud800" with no partner: UTF-8 cannot encode it, so no file or database can).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Embeddings, overrides and isolates (LRE RLE PDF LRO RLO, LRI RLI FSI PDI).
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


class TooDeep(ValueError):
    """A value nests deeper than :data:`MAX_DEPTH`; ``path`` is where."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path or 'the body'} nests deeper than {MAX_DEPTH} levels")
        self.path = path


def unstorable(text: str) -> str | None:
    """What makes ``text`` impossible to store, or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain NUL characters"
    return f"must not contain an unpaired surrogate (U+{ord(found.group()):04X})"


def has_bidi_controls(text: str) -> bool:
    return _BIDI_CONTROLS.search(text) is not None


def without_bidi_controls(text: str) -> str:
    """``text`` with its bidirectional controls removed (for titles rendered
    from free text, which may carry them legitimately)."""
    return _BIDI_CONTROLS.sub("", text)


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every string (keys included) in ``value`` with its path, without
    recursion; raises :class:`TooDeep` past :data:`MAX_DEPTH`."""
    pending: list[tuple[Any, str, int]] = [(value, path, 0)]
    while pending:
        item, where, depth = pending.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise TooDeep(where)
            if isinstance(item, dict):
                for key, child in item.items():
                    at = _child(where, _UNSTORABLE.sub("\ufffd", str(key)))
                    if isinstance(key, str):
                        yield at, key
                    pending.append((child, at, depth + 1))
            else:
                pending.extend((child, _child(where, i), depth + 1) for i, child in enumerate(item))


def unstorable_fields(value: Any, path: str = "") -> dict[str, str]:
    """Each field of ``value`` (a parsed JSON value) holding a string that
    cannot be stored, by its path (``inputs.topics[2]``), with what is wrong.
    Raises :class:`TooDeep` if it nests deeper than :data:`MAX_DEPTH`."""
    problems: dict[str, str] = {}
    for where, text in _walk(value, path):
        wrong = unstorable(text)
        if wrong is not None:
            problems.setdefault(where or "body", wrong)
            if len(problems) >= MAX_REPORTED:
                break
    return problems


def stored_value_problems(value: Any, path: str) -> dict[str, str]:
    """:func:`unstorable_fields` for a value already stored (a schedule's
    inputs kept from before these checks): too deep is one more problem."""
    try:
        return unstorable_fields(value, path)
    except TooDeep as exc:
        return {exc.path or path: f"nests deeper than {MAX_DEPTH} levels"}
