"""The Jinja2 sandbox that job titles and prompts render in.

A prompt sees one name, ``inputs``. It is checked when the template loads:
it must compile, name only declared inputs, touch no private attribute and
include nothing. Rendering uses ``StrictUndefined``, so a missing value is
an error rather than an empty string, and the sandbox refuses attribute
escapes such as ``''.__class__``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from crewboard.workflows.inputs import Problems

# Bounds what one expression may build: a prompt's rendered size is capped
# after rendering, but `'x' * 10**10` would exhaust memory before that.
_MAX_REPEAT_CHARS = 1_000_000
_MAX_POWER_BITS = 100_000


class RenderError(Exception):
    """A title or prompt failed to render. ``where`` names it, e.g. ``jobs.brief.prompt``."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}"[:1000])
        self.where = where


class _PromptEnvironment(SandboxedEnvironment):
    """Jinja2's sandbox, with ``*`` and ``**`` bounded."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > _MAX_REPEAT_CHARS
                ):
                    raise SecurityError("repetition result too large")
        if (
            operator == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and max(left.bit_length(), 1) * abs(right) > _MAX_POWER_BITS
        ):
            raise SecurityError("power result too large")
        return super().call_binop(context, operator, left, right)


_ENV = _PromptEnvironment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
)
# lipsum and the like have no use in a prompt.
_ENV.globals = {name: _ENV.globals[name] for name in ("range", "dict", "namespace")}
_KNOWN_NAMES = frozenset({"inputs", *_ENV.globals})
_NO_LOADING = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


def compile_source(
    source: str, where: str, input_names: Collection[str], problems: Problems
) -> jinja2.Template | None:
    """Compile a title or prompt, checking it names only declared inputs;
    None (with problems added) if it is wrong."""
    try:
        tree = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        problems.add(where, f"template syntax error at line {exc.lineno}: {exc.message}")
        return None
    before = len(problems.items)
    for node in tree.find_all(_NO_LOADING):
        problems.add(where, f"{type(node).__name__.lower()} is not available in prompts")
    for name in sorted(meta.find_undeclared_variables(tree) - _KNOWN_NAMES):
        problems.add(where, f"unknown name {name[:64]!r} (inputs are written inputs.<name>)")
    for found in tree.find_all((nodes.Getattr, nodes.Getitem)):
        access = cast(nodes.Getattr | nodes.Getitem, found)
        if isinstance(access, nodes.Getattr):
            attr: Any = access.attr
        else:
            attr = access.arg.value if isinstance(access.arg, nodes.Const) else None
        if not isinstance(attr, str):
            continue
        if attr.startswith("_"):
            problems.add(where, f"{attr[:64]!r}: private attributes are not available")
        elif (
            isinstance(access.node, nodes.Name)
            and access.node.name == "inputs"
            and attr not in input_names
        ):
            problems.add(where, f"inputs.{attr[:64]} is not an input of this template")
    if len(problems.items) > before:
        return None
    return _ENV.from_string(tree)


def render(template: jinja2.Template, where: str, inputs: dict[str, Any]) -> str:
    """Render with ``inputs``; any failure is a RenderError without a traceback."""
    try:
        return template.render(inputs=inputs)
    except jinja2.UndefinedError as exc:
        raise RenderError(where, exc.message or "undefined value") from None
    except Exception as exc:  # whatever template code raises is the template's fault
        raise RenderError(where, f"cannot be rendered: {type(exc).__name__}: {exc}") from None
