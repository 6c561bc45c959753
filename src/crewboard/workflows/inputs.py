"""A template's declared inputs: reading a declaration, checking a value
against it, and describing it as JSON Schema.

Values are never coerced: ``"5"`` is not an integer, ``true`` is not a
number, and NaN or infinity is not a number at all.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

INPUT_TYPES = ("string", "integer", "number", "boolean")

# The longest a string input may be, and the largest maxLength a template may declare.
MAX_STRING_INPUT = 100_000
MAX_DESCRIPTION_CHARS = 2000
_MAX_ENUM = 100
_KEYS = ("type", "description", "required", "default", "enum", "minimum", "maximum", "maxLength")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # an input with no default


class Problems:
    """What is wrong with a template, one ``field: message`` per item."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}" if where else message)

    def text(self, file_name: str, limit: int = 10) -> str:
        shown = "; ".join(self.items[:limit])
        more = len(self.items) - limit
        return f"{file_name}: {shown}" + (f" (and {more} more)" if more > 0 else "")


@dataclass(frozen=True)
class InputSpec:
    """One declared input of a template."""

    name: str
    type: str  # one of INPUT_TYPES
    description: str = ""
    required: bool = False
    default: Any = MISSING
    enum: tuple[Any, ...] | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    max_length: int | None = None  # strings only; None means MAX_STRING_INPUT

    def schema(self) -> dict[str, Any]:
        """This input as a JSON Schema property."""
        prop: dict[str, Any] = {"type": self.type}
        if self.description:
            prop["description"] = self.description
        if self.default is not MISSING:
            prop["default"] = self.default
        if self.enum is not None:
            prop["enum"] = list(self.enum)
        if self.minimum is not None:
            prop["minimum"] = self.minimum
        if self.maximum is not None:
            prop["maximum"] = self.maximum
        if self.type == "string" and self.enum is None:
            prop["maxLength"] = MAX_STRING_INPUT if self.max_length is None else self.max_length
        return prop


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))


def show(value: Any) -> str:
    """A value as the user wrote it in JSON or YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_value(spec: InputSpec, value: Any) -> str | None:
    """What is wrong with ``value`` for ``spec``, or None."""
    if spec.type == "string":
        if not isinstance(value, str):
            return "must be a string"
        limit = MAX_STRING_INPUT if spec.max_length is None else spec.max_length
        if len(value) > limit:
            return f"must be at most {limit} characters"
        if "\x00" in value:
            return "must not contain NUL characters"
    elif spec.type == "integer" and not is_int(value):
        return "must be an integer"
    elif spec.type == "number" and not _is_number(value):
        return "must be a finite number"
    elif spec.type == "boolean" and not isinstance(value, bool):
        return "must be true or false"
    if spec.enum is not None and value not in spec.enum:
        return "must be one of: " + ", ".join(show(v) for v in spec.enum)
    if spec.minimum is not None and value < spec.minimum:
        return f"must be at least {spec.minimum}"
    if spec.maximum is not None and value > spec.maximum:
        return f"must be at most {spec.maximum}"
    return None


def parse_input(name: str, entry: Any, problems: Problems) -> InputSpec | None:
    """Read the declaration of input ``name``; None (with problems added) if it is wrong."""
    where = f"inputs.{name}"
    if not isinstance(entry, dict):
        problems.add(where, "must be a mapping such as {type: string, required: true}")
        return None
    before = len(problems.items)
    for key in entry:
        if key not in _KEYS:
            problems.add(where, f"unknown key {show(key)!r} (expected {', '.join(_KEYS)})")
    type_ = entry.get("type")
    if type_ not in INPUT_TYPES:
        problems.add(f"{where}.type", "must be one of " + ", ".join(INPUT_TYPES))
        return None
    spec = InputSpec(name, type_)
    description = entry.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        problems.add(
            f"{where}.description", f"must be text of at most {MAX_DESCRIPTION_CHARS} characters"
        )
    required = entry.get("required", False)
    if not isinstance(required, bool):
        problems.add(f"{where}.required", "must be true or false")
    numeric, kind = (is_int, "an integer") if type_ == "integer" else (_is_number, "a number")
    for key in ("minimum", "maximum"):
        if key not in entry:
            continue
        if type_ not in ("integer", "number"):
            problems.add(f"{where}.{key}", f"does not apply to a {type_} input")
        elif not numeric(entry[key]):
            problems.add(f"{where}.{key}", f"must be {kind}")
    if "maxLength" in entry:
        max_length = entry["maxLength"]
        if type_ != "string":
            problems.add(f"{where}.maxLength", f"does not apply to a {type_} input")
        elif not is_int(max_length) or not 0 <= max_length <= MAX_STRING_INPUT:
            problems.add(f"{where}.maxLength", f"must be a whole number 0-{MAX_STRING_INPUT}")
    if len(problems.items) > before:
        return None
    spec = dataclasses.replace(
        spec,
        description=description,
        required=required,
        minimum=entry.get("minimum"),
        maximum=entry.get("maximum"),
        max_length=entry.get("maxLength"),
    )
    if spec.minimum is not None and spec.maximum is not None and spec.minimum > spec.maximum:
        problems.add(where, "minimum is greater than maximum")
        return None
    if "enum" in entry:
        enum = entry["enum"]
        if not isinstance(enum, list) or not 1 <= len(enum) <= _MAX_ENUM:
            problems.add(f"{where}.enum", f"must be a list of 1-{_MAX_ENUM} values")
            return None
        for value in enum:
            wrong = check_value(spec, value)
            if wrong:
                problems.add(f"{where}.enum", f"{show(value)[:64]!r} {wrong}")
                return None
        if len({(type(v), v) for v in enum}) != len(enum):
            problems.add(f"{where}.enum", "lists a value twice")
            return None
        spec = dataclasses.replace(spec, enum=tuple(enum))
    if "default" in entry:
        if required:
            problems.add(f"{where}.default", "a required input cannot have a default")
            return None
        wrong = check_value(spec, entry["default"])
        if wrong:
            problems.add(f"{where}.default", wrong)
            return None
        spec = dataclasses.replace(spec, default=entry["default"])
    return spec


def trial_values(specs: tuple[InputSpec, ...]) -> dict[str, Any]:
    """Stand-in inputs for a trial render: each default, else a valid value of
    the type; optional inputs with no default are left out, as a crew may."""
    values: dict[str, Any] = {}
    for spec in specs:
        if spec.default is not MISSING:
            values[spec.name] = spec.default
        elif not spec.required:
            continue
        elif spec.enum:
            values[spec.name] = spec.enum[0]
        elif spec.type == "string":
            values[spec.name] = "" if spec.max_length == 0 else "x"
        elif spec.type == "boolean":
            values[spec.name] = False
        elif spec.minimum is not None:
            values[spec.name] = spec.minimum
        elif spec.maximum is not None and spec.maximum < 0:
            values[spec.name] = spec.maximum
        else:
            values[spec.name] = 0
    return values


def check_inputs(
    specs: tuple[InputSpec, ...], inputs: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """``(values with defaults applied, {field: what is wrong})`` for a crew's inputs."""
    if not isinstance(inputs, dict):
        return {}, {"inputs": "must be an object"}
    by_name = {spec.name: spec for spec in specs}
    if len(inputs) > len(by_name) + 20:
        return {}, {"inputs": f"too many inputs: this template has {len(by_name)}"}
    fields: dict[str, str] = {}
    for name in inputs:
        if name not in by_name:
            shown = str(name) if len(str(name)) <= 64 else str(name)[:64] + "…"
            fields[shown] = "is not an input of this template"
    values: dict[str, Any] = {}
    for name, spec in by_name.items():
        if name in inputs:
            wrong = check_value(spec, inputs[name])
            if wrong:
                fields[name] = wrong
            else:
                values[name] = inputs[name]
        elif spec.required:
            fields[name] = "is required"
        elif spec.default is not MISSING:
            values[name] = spec.default
    return values, fields
