"""The crew of a template named by id, as a schedule names it: looked up among
the loaded templates and rendered from stored inputs.

A schedule keeps a template id and inputs; the crew they make is rendered
here, before the board transaction that writes it, so no prompt is rendered
while the board's write lock is held. Errors name fields the way the API
does: ``templateId``, ``inputs`` or ``inputs.<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crewboard.errors import ValidationFailed
from crewboard.workflows.templates import CrewPlan, Template, plan_crew

# Fields a template reports under their own name; every other one is an input.
_TOP_FIELDS = ("inputs", "templateId")


@dataclass(frozen=True)
class RenderedCrew:
    """A crew rendered ahead of the transaction that writes it: the template
    id and inputs it was rendered from (so the transaction can tell whether
    they are still the schedule's), and the plan, or why there is none."""

    template_id: str
    inputs: dict[str, Any]
    plan: CrewPlan | None
    problem: str = ""


def _api_fields(fields: Mapping[str, str]) -> dict[str, str]:
    return {(key if key in _TOP_FIELDS else f"inputs.{key}"): text for key, text in fields.items()}


def _find(templates: Mapping[str, Template], template_id: str) -> Template:
    template = templates.get(template_id)
    if template is None:
        raise ValidationFailed(
            f"no template {template_id[:100]!r}", {"templateId": "no such template"}
        )
    return template


def plan_named_crew(templates: Mapping[str, Template], template_id: str, inputs: Any) -> CrewPlan:
    """The crew the template ``template_id`` makes from ``inputs``, prompts
    rendered; ValidationFailed naming ``templateId`` or ``inputs.<name>``
    if the template is gone, invalid or refuses the inputs."""
    template = _find(templates, template_id)
    try:
        return plan_crew(template, inputs)
    except ValidationFailed as exc:
        raise ValidationFailed(str(exc), _api_fields(exc.fields)) from None


def render_crew(
    templates: Mapping[str, Template], template_id: str, inputs: dict[str, Any]
) -> RenderedCrew:
    """:func:`plan_named_crew` as a value: a crew that cannot be made carries
    its reason (``inputs.question: is required``) instead of raising, for a
    caller that records the failure rather than refusing a request."""
    try:
        plan = plan_named_crew(templates, template_id, inputs)
    except ValidationFailed as exc:
        problem = "; ".join(f"{key}: {text}" for key, text in exc.fields.items()) or str(exc)
        return RenderedCrew(template_id, inputs, None, problem)
    return RenderedCrew(template_id, inputs, plan)
