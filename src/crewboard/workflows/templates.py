"""Template files: finding them, checking them, and planning a crew from one.

A template that is wrong in any way is still loaded, with ``valid=False``
and an ``error`` naming the file and the field, so that the template list
can say why instead of hiding it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
import yaml

from crewboard.config import Config
from crewboard.errors import ValidationFailed
from crewboard.textcheck import without_bidi_controls
from crewboard.webhooks import BadWebhookUrl, check_url_form
from crewboard.workflows.inputs import (
    MAX_DESCRIPTION_CHARS,
    MISSING,
    InputSpec,
    Problems,
    check_inputs,
    is_int,
    parse_input,
    show,
    trial_values,
)
from crewboard.workflows.prompts import RenderError, compile_source, render

log = logging.getLogger(__name__)

SUFFIX = ".job_workflow.yaml"

DEFAULT_AGENT = "assistant"
DEFAULT_TIMEOUT_S = 600
DEFAULT_RETRIES = 0
MAX_TIMEOUT_S = 7 * 24 * 3600
MAX_RETRIES = 10

MAX_FILE_BYTES = 256 * 1024
MAX_JOBS = 50
MAX_INPUTS = 50
MAX_NAME_CHARS = 200
MAX_TITLE_CHARS = 200
MAX_SOURCE_CHARS = 50_000
MAX_PROMPT_CHARS = 200_000

_TEMPLATE_ID = re.compile(r"[A-Za-z0-9_-]{1,100}", re.ASCII)
_JOB_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
_INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}", re.ASCII)
_ARTIFACT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", re.ASCII)

_OPTIONAL_HINT = (
    "an optional input with no default may be left out: "
    "test it with 'is defined' or give it a default"
)

_TOP_KEYS = ("name", "description", "inputs", "defaults", "jobs", "webhook")
_DEFAULT_KEYS = ("agent", "timeout", "retries")
_JOB_KEYS = ("title", "agent", "prompt", "needs", "artifact", "timeout", "retries")


@dataclass(frozen=True)
class JobSpec:
    """One job of a template as written; title and prompt are Jinja source."""

    key: str
    title: str | None
    agent: str
    prompt: str
    needs: tuple[str, ...]
    artifact: str | None
    timeout_s: int
    retries: int  # extra attempts after the first


@dataclass(frozen=True)
class Template:
    """A loaded template; when invalid, ``error`` says why and ``jobs`` is empty."""

    id: str
    name: str
    description: str = ""
    inputs: tuple[InputSpec, ...] = ()
    jobs: tuple[JobSpec, ...] = ()  # parents first
    error: str | None = None
    # Where the crews it makes post their finishes, unless a request or
    # schedule names another (crewboard.board.webhooks).
    webhook_url: str | None = None
    _compiled: Mapping[tuple[str, str], jinja2.Template] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def valid(self) -> bool:
        return self.error is None

    def input_schema(self) -> dict[str, Any]:
        """The inputs as a JSON Schema object."""
        return {
            "type": "object",
            "properties": {spec.name: spec.schema() for spec in self.inputs},
            "required": [spec.name for spec in self.inputs if spec.required],
            "additionalProperties": False,
        }

    def public(self) -> dict[str, Any]:
        """The template as ``GET /api/templates`` lists it."""
        result: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "inputs": self.input_schema(),
            "valid": self.valid,
        }
        if self.error is not None:
            result["error"] = self.error
        return result


@dataclass(frozen=True)
class PlannedJob:
    """A job ready for the board, its title and prompt rendered."""

    key: str
    title: str
    agent: str
    prompt: str
    needs: tuple[str, ...]
    artifact: str | None
    timeout_s: int
    retries: int


@dataclass(frozen=True)
class CrewPlan:
    """The crew a template makes from some inputs; ``jobs`` parents first."""

    template_id: str
    title: str
    inputs: dict[str, Any]  # validated, defaults applied
    jobs: tuple[PlannedJob, ...]
    webhook_url: str | None = None  # the template's


# -- discovery --------------------------------------------------------------


def shipped_dir() -> Path:
    """The folder of templates shipped with the product."""
    return Path(str(files("crewboard") / "_shipped" / "workflows"))


def template_dirs(config: Config) -> list[Path]:
    """Where templates are found, in order; a later folder overrides by id."""
    return [shipped_dir(), *config.workflows]


def load_templates(dirs: Iterable[Path], agent_ids: Collection[str]) -> dict[str, Template]:
    """Every template in ``dirs`` by id, valid or not."""
    templates: dict[str, Template] = {}
    for directory in dirs:
        if not directory.is_dir():
            log.warning("workflow folder %s does not exist; skipped", directory)
            continue
        for path in sorted(directory.glob("*" + SUFFIX)):
            template_id = path.name.removesuffix(SUFFIX)
            if not _TEMPLATE_ID.fullmatch(template_id):
                log.warning("workflow %s skipped: an id uses only letters, digits, - and _", path)
                continue
            templates[template_id] = load_template(path, agent_ids)
    return templates


def load_template(path: Path, agent_ids: Collection[str]) -> Template:
    """One template file; a bad file is an invalid Template, never an exception."""
    template_id = path.name.removesuffix(SUFFIX)

    def broken(why: str) -> Template:
        return Template(template_id, template_id, error=f"{path.name}: {why}")

    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return broken(f"cannot be read ({exc.strerror})")
    if len(data) > MAX_FILE_BYTES:
        return broken(f"larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return broken("not UTF-8 text")
    return parse_template(template_id, text, agent_ids, file_name=path.name)


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load`` that also refuses a key written twice in one mapping,
    which YAML would otherwise resolve silently to the last one."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key_node.value!r} appears twice", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "cannot be parsed"
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML{where}: {problem}"


# -- checking a template ----------------------------------------------------


def _text(value: Any, where: str, limit: int, problems: Problems) -> str | None:
    if not isinstance(value, str) or len(value) > limit:
        problems.add(where, f"must be text of at most {limit} characters")
        return None
    return value


def _mapping(value: Any, where: str, allowed: tuple[str, ...] | None, problems: Problems) -> dict:
    """``value`` if it is a mapping with text keys (from ``allowed``), else ``{}``."""
    if not isinstance(value, dict):
        problems.add(where, "must be a mapping")
        return {}
    good = True
    for key in value:
        if not isinstance(key, str):
            problems.add(where, f"name {show(key)!r} must be text (quote it in the YAML)")
            good = False
        elif allowed is not None and key not in allowed:
            problems.add(where, f"unknown key {key[:64]!r} (expected {', '.join(allowed)})")
            good = False
    return value if good else {}


def _whole(value: Any, where: str, low: int, high: int, problems: Problems) -> int:
    if not is_int(value) or not low <= value <= high:
        problems.add(where, f"must be a whole number {low}-{high}")
        return low
    return int(value)


def _agent(value: Any, where: str, agent_ids: Collection[str], problems: Problems) -> str:
    if not isinstance(value, str) or value not in agent_ids:
        known = ", ".join(sorted(agent_ids)[:20]) or "none"
        shown = repr(value) if isinstance(value, str) and len(value) <= 64 else "that"
        problems.add(where, f"unknown agent {shown} (known: {known})")
        return ""
    return value


def _parse_job(
    key: str, entry: Any, defaults: dict[str, Any], agent_ids: Collection[str], problems: Problems
) -> JobSpec | None:
    where = f"jobs.{key}"
    if not isinstance(entry, dict):
        problems.add(where, "must be a mapping with at least a prompt")
        return None
    before = len(problems.items)
    _mapping(entry, where, _JOB_KEYS, problems)
    prompt = _text(entry.get("prompt"), f"{where}.prompt", MAX_SOURCE_CHARS, problems)
    if prompt is not None and not prompt.strip():
        problems.add(f"{where}.prompt", "must not be empty")
    title = entry.get("title")
    if title is not None:
        title = _text(title, f"{where}.title", 1000, problems)
    agent = _agent(entry.get("agent", defaults["agent"]), f"{where}.agent", agent_ids, problems)
    needs = entry.get("needs", [])
    if isinstance(needs, str):
        needs = [needs]
    if not isinstance(needs, list) or not all(isinstance(n, str) for n in needs):
        problems.add(f"{where}.needs", "must be a list of job names")
    elif len(set(needs)) != len(needs):
        problems.add(f"{where}.needs", "names a job twice")
    artifact = entry.get("artifact")
    if artifact is not None and (
        not isinstance(artifact, str) or not _ARTIFACT.fullmatch(artifact) or ".." in artifact
    ):
        problems.add(
            f"{where}.artifact",
            "must be a plain file name such as brief.md (letters, digits, . - _; no folders)",
        )
    timeout = entry.get("timeout", defaults["timeout"])
    timeout = _whole(timeout, f"{where}.timeout", 1, MAX_TIMEOUT_S, problems)
    retries = entry.get("retries", defaults["retries"])
    retries = _whole(retries, f"{where}.retries", 0, MAX_RETRIES, problems)
    if len(problems.items) > before or prompt is None:
        return None
    return JobSpec(key, title, agent, prompt, tuple(needs), artifact, timeout, retries)


def _order(needs: Mapping[str, tuple[str, ...]], problems: Problems) -> list[str]:
    """Job keys with parents first, otherwise in file order."""
    placed: list[str] = []
    done: set[str] = set()
    while len(placed) < len(needs):
        ready = next((k for k in needs if k not in done and done.issuperset(needs[k])), None)
        if ready is None:
            path = [next(k for k in needs if k not in done)]
            while (step := next(n for n in needs[path[-1]] if n not in done)) not in path:
                path.append(step)
            cycle = [*path[path.index(step) :], step]
            problems.add("jobs", "needs form a cycle: " + " -> ".join(cycle))
            return []
        placed.append(ready)
        done.add(ready)
    return placed


def parse_template(
    template_id: str, text: str, agent_ids: Collection[str], file_name: str | None = None
) -> Template:
    """Check a template's YAML text; a bad one is an invalid Template, never an exception."""
    file_name = file_name or template_id + SUFFIX
    problems = Problems()
    try:
        doc = yaml.load(text, Loader=_Loader)  # a SafeLoader: Python tags are refused
    except yaml.YAMLError as exc:
        problems.add("", _yaml_error(exc))
    except RecursionError:
        problems.add("", "nested too deeply")
    else:
        if not isinstance(doc, dict):
            problems.add("", "must be a YAML mapping with name, description, inputs and jobs")
    if problems.items:
        return Template(template_id, template_id, error=problems.text(file_name))

    _mapping(doc, "", _TOP_KEYS, problems)
    name = _text(doc.get("name", template_id), "name", MAX_NAME_CHARS, problems)
    description = doc.get("description", "")
    description = _text(description, "description", MAX_DESCRIPTION_CHARS, problems)

    inputs: dict[str, InputSpec] = {}
    raw_inputs = _mapping(doc.get("inputs", {}), "inputs", None, problems)
    if len(raw_inputs) > MAX_INPUTS:
        problems.add("inputs", f"at most {MAX_INPUTS} inputs")
        raw_inputs = {}
    for input_name, entry in raw_inputs.items():
        if not _INPUT_NAME.fullmatch(input_name):
            why = "letters, digits and _, not starting with a digit"
            problems.add("inputs", f"{input_name[:64]!r} is not a valid input name ({why})")
        elif spec := parse_input(input_name, entry, problems):
            inputs[input_name] = spec

    webhook_url = None
    if doc.get("webhook") is not None:
        try:
            webhook_url = check_url_form(doc["webhook"])
        except BadWebhookUrl as exc:
            problems.add("webhook", str(exc))

    raw_defaults = _mapping(doc.get("defaults", {}), "defaults", _DEFAULT_KEYS, problems)
    agent = raw_defaults.get("agent", DEFAULT_AGENT)
    timeout = raw_defaults.get("timeout", DEFAULT_TIMEOUT_S)
    retries = raw_defaults.get("retries", DEFAULT_RETRIES)
    defaults = {
        "agent": _agent(agent, "defaults.agent", agent_ids, problems),
        "timeout": _whole(timeout, "defaults.timeout", 1, MAX_TIMEOUT_S, problems),
        "retries": _whole(retries, "defaults.retries", 0, MAX_RETRIES, problems),
    }

    jobs: dict[str, JobSpec] = {}
    raw_jobs = {}
    if doc.get("jobs") in (None, {}):
        problems.add("jobs", "a template needs at least one job")
    else:
        raw_jobs = _mapping(doc["jobs"], "jobs", None, problems)
    if len(raw_jobs) > MAX_JOBS:
        problems.add("jobs", f"at most {MAX_JOBS} jobs")
        raw_jobs = {}
    for key, entry in raw_jobs.items():
        if not _JOB_KEY.fullmatch(key):
            problems.add("jobs", f"{key[:64]!r} is not a valid job name (letters, digits, - and _)")
        elif job := _parse_job(key, entry, defaults, agent_ids, problems):
            jobs[key] = job

    # Whatever else is wrong, list the inputs that could be read.
    base = Template(template_id, name or template_id, description or "", tuple(inputs.values()))
    if problems.items:
        return _invalid(base, problems, file_name)
    for job in jobs.values():
        for need in job.needs:
            if need not in jobs:
                problems.add(f"jobs.{job.key}.needs", f"unknown job {need[:64]!r}")
    order = [] if problems.items else _order({k: j.needs for k, j in jobs.items()}, problems)
    compiled: dict[tuple[str, str], jinja2.Template] = {}
    for job in jobs.values():
        for part, source in (("title", job.title), ("prompt", job.prompt)):
            if source is None:
                continue
            compiled_part = compile_source(source, f"jobs.{job.key}.{part}", inputs, problems)
            if compiled_part is not None:
                compiled[job.key, part] = compiled_part
    if problems.items:
        return _invalid(base, problems, file_name)

    template = replace(
        base, jobs=tuple(jobs[k] for k in order), webhook_url=webhook_url, _compiled=compiled
    )
    # A trial render with the defaults catches what only shows when run: a
    # sandbox escape, a type error, a use of an optional input left out.
    trial = trial_values(template.inputs)
    for job in template.jobs:
        try:
            _render_job(template, job, trial)
        except RenderError as exc:
            problems.add("", str(exc))
    if problems.items and any(not s.required and s.default is MISSING for s in template.inputs):
        problems.add("hint", _OPTIONAL_HINT)
    return _invalid(base, problems, file_name) if problems.items else template


def _invalid(base: Template, problems: Problems, file_name: str) -> Template:
    return replace(base, error=problems.text(file_name))


# -- crews ------------------------------------------------------------------


def validate_inputs(template: Template, inputs: Any) -> dict[str, Any]:
    """A crew's inputs with defaults applied, or ValidationFailed reporting
    every bad field at once (``fields={name: message}``, unknown names
    included). Nothing is coerced; an invalid template is refused
    (``fields={"templateId": ...}``)."""
    if not template.valid:
        raise ValidationFailed(
            f"template {template.id!r} is invalid: {template.error}",
            fields={"templateId": f"template is invalid: {template.error}"},
        )
    values, fields = check_inputs(template.inputs, inputs)
    if fields:
        raise ValidationFailed("some inputs are not valid", fields=fields)
    return values


def _render_job(template: Template, job: JobSpec, values: dict[str, Any]) -> tuple[str, str]:
    where = f"jobs.{job.key}.prompt"
    prompt = render(template._compiled[job.key, "prompt"], where, values).strip()
    if not prompt:
        raise RenderError(where, "renders empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RenderError(where, f"renders longer than {MAX_PROMPT_CHARS} characters")
    title = job.key
    if job.title is not None:
        rendered = render(template._compiled[job.key, "title"], f"jobs.{job.key}.title", values)
        # An input may carry bidirectional controls: a title shows none.
        title = " ".join(without_bidi_controls(rendered).split()) or job.key
    return title, prompt


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plan_crew(template: Template, inputs: Any, title: Any = None) -> CrewPlan:
    """The jobs a template makes from ``inputs``, parents first, titles and
    prompts rendered; ValidationFailed if the inputs or rendering are wrong.

    ``title``, when given, names the crew: it becomes the title of a
    single-job crew and prefixes each job's title otherwise.
    """
    values = validate_inputs(template, inputs)
    if title is not None and not isinstance(title, str):
        raise ValidationFailed("title must be a string", fields={"title": "must be a string"})
    crew_title = " ".join((title or "").split())
    if len(crew_title) > MAX_TITLE_CHARS:
        detail = f"must be at most {MAX_TITLE_CHARS} characters"
        raise ValidationFailed(f"title {detail}", fields={"title": detail})
    planned = []
    for job in template.jobs:
        try:
            job_title, prompt = _render_job(template, job, values)
        except RenderError as exc:
            detail = str(exc)
            raise ValidationFailed(f"cannot plan the crew: {detail}", {"inputs": detail}) from None
        if crew_title:
            job_title = crew_title if len(template.jobs) == 1 else f"{crew_title}: {job_title}"
        job_title = _clip(job_title, MAX_TITLE_CHARS)
        planned.append(
            PlannedJob(
                job.key,
                job_title,
                job.agent,
                prompt,
                job.needs,
                job.artifact,
                job.timeout_s,
                job.retries,
            )
        )
    return CrewPlan(
        template.id, crew_title or template.name, values, tuple(planned), template.webhook_url
    )
