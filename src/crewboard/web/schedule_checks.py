"""What the bodies that create and edit a schedule must hold.

Each field has its own check; then the inputs are checked against the
template they are for, by rendering the crew they would make. Every bad
field is reported at once, in one ValidationFailed whose ``fields`` use the
API's names (``name``, ``inputs.question``...). What passes is the board's
:class:`~crewboard.board.schedules.ScheduleChanges`, ready to write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from crewboard import cron, textcheck
from crewboard.board.models import Schedule
from crewboard.board.schedules import ScheduleChanges
from crewboard.errors import ValidationFailed
from crewboard.web.validate import BIDI_REFUSED, has_control_chars
from crewboard.webhooks import BadWebhookUrl, check_url_form
from crewboard.workflows import Template, plan_named_crew

MAX_NAME_CHARS = 200
CREATE_FIELDS = (
    "name",
    "templateId",
    "inputs",
    "rule",
    "timezone",
    "overlap",
    "enabled",
    "webhookUrl",
)
REQUIRED_FIELDS = ("name", "templateId", "inputs", "rule", "timezone")
# The template is fixed once made; enabling is /enable and /disable.
EDIT_FIELDS = ("name", "inputs", "rule", "timezone", "overlap", "webhookUrl")


def _refuse(key: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{key} {message}", {key: message})


def _check_name(value: Any) -> str:
    if not isinstance(value, str):
        raise _refuse("name", "must be a string")
    name = value.strip()
    if not name:
        raise _refuse("name", "must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise _refuse("name", f"must be at most {MAX_NAME_CHARS} characters")
    if has_control_chars(name):
        raise _refuse("name", "must not contain control characters")
    if textcheck.has_bidi_controls(name):
        raise _refuse("name", BIDI_REFUSED)
    return name


def _check_template_id(value: Any) -> str:
    if not isinstance(value, str):
        raise _refuse("templateId", "must be a string")
    return value


def _check_inputs(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _refuse("inputs", "must be an object")
    return value


def _check_timezone(value: Any) -> str:
    return cron.validate_timezone(value).key


def _check_enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _refuse("enabled", "must be true or false")
    return value


def _check_webhook_url(value: Any) -> str:
    """The URL's form only; where its host points is checked by the route
    (:func:`crewboard.web.api.webhooks.vet_webhook_url`). Empty removes it."""
    if value == "":
        return ""
    try:
        return check_url_form(value)
    except BadWebhookUrl as exc:
        raise _refuse("webhookUrl", str(exc)) from None


_FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": _check_name,
    "templateId": _check_template_id,
    "inputs": _check_inputs,
    "rule": cron.validate_rule,
    "timezone": _check_timezone,
    "overlap": cron.validate_overlap,
    "enabled": _check_enabled,
    "webhookUrl": _check_webhook_url,
}


def _shape_problems(
    body: Mapping[str, Any], allowed: tuple[str, ...], creating: bool
) -> dict[str, str]:
    """Fields the body may not hold, and fields it must hold but lacks (on
    create) or sets to null (on edit)."""
    problems = {str(key)[:100]: "unknown field" for key in body if key not in allowed}
    if creating:
        problems.update({key: "is required" for key in REQUIRED_FIELDS if body.get(key) is None})
    else:
        problems.update({key: "must not be null" for key in allowed if body.get(key, 0) is None})
    return problems


def _check_fields(
    body: Mapping[str, Any], allowed: tuple[str, ...], problems: dict[str, str]
) -> dict[str, Any]:
    """Each allowed field the body gives, checked on its own; what is wrong
    goes into ``problems``."""
    checked: dict[str, Any] = {}
    for key in allowed:
        if body.get(key) is None:
            continue
        try:
            checked[key] = _FIELD_CHECKS[key](body[key])
        except ValidationFailed as exc:
            problems.update(exc.fields or {key: str(exc)})
    return checked


def _check_template_inputs(
    checked: Mapping[str, Any],
    templates: Mapping[str, Template],
    current: Schedule | None,
    problems: dict[str, str],
) -> dict[str, Any] | None:
    """The inputs the schedule will hold, once its template accepts them and
    they render; None if neither the template nor the inputs change (or they
    are wrong: then ``problems`` says why). A new schedule whose inputs are
    missing or wrong is tried with none, so the inputs its template requires
    are named too."""
    template_id = checked.get("templateId")
    inputs = checked.get("inputs")
    if template_id is None:
        if inputs is None or current is None:
            return None
        template_id = current.template_id
    if inputs is None:
        inputs = current.inputs if current is not None else {}
    try:
        plan_named_crew(templates, template_id, inputs)
    except ValidationFailed as exc:
        for key, message in exc.fields.items():
            problems.setdefault(key, message)
        return None
    return dict(inputs)


def needs_templates(body: Mapping[str, Any], current: Schedule | None) -> bool:
    """Whether checking ``body`` reads the templates: a new schedule, or new inputs."""
    return current is None or body.get("inputs") is not None


def check_schedule(
    body: Mapping[str, Any],
    templates: Mapping[str, Template],
    *,
    current: Schedule | None = None,
) -> ScheduleChanges:
    """Check a new schedule (``current`` None: name, templateId, inputs, rule
    and timezone are required) or an edit of ``current`` (only what is given;
    null is refused). ``body`` is the request's JSON object; ``templates``
    the loaded templates by id, which the inputs are checked against."""
    allowed = CREATE_FIELDS if current is None else EDIT_FIELDS
    problems = _shape_problems(body, allowed, creating=current is None)
    checked = _check_fields(body, allowed, problems)
    if current is None and checked.get("webhookUrl") == "":
        problems["webhookUrl"] = "must not be empty (leave it out for none)"
    inputs = _check_template_inputs(checked, templates, current, problems)
    if problems:
        raise ValidationFailed("some fields are not valid", problems)
    return ScheduleChanges(
        name=checked.get("name"),
        template_id=checked.get("templateId"),
        inputs=inputs,
        rule=checked.get("rule"),
        timezone=checked.get("timezone"),
        overlap=checked.get("overlap"),
        enabled=checked.get("enabled"),
        webhook_url=checked.get("webhookUrl"),
    )
