"""Workflow templates (``*.job_workflow.yaml``): the crews users can start.

A template declares typed inputs and a small graph of jobs; each job's title
and prompt are Jinja2 templates rendered in a sandbox with ``inputs`` as the
only name. This package finds and checks templates (``templates``), checks
a crew's inputs (``inputs``), renders prompts (``prompts``) and renders the
crew of a template named by id, as a schedule names it (``crews``). It touches
neither the board nor the web: callers load templates, validate inputs and
get back a ``CrewPlan`` to write.

Template files are written by the operator; inputs come from users and are
only ever data inside a rendered prompt, never template text.
"""

from crewboard.workflows.crews import RenderedCrew, plan_named_crew, render_crew
from crewboard.workflows.inputs import INPUT_TYPES, MAX_STRING_INPUT, InputSpec
from crewboard.workflows.templates import (
    SUFFIX,
    CrewPlan,
    JobSpec,
    PlannedJob,
    Template,
    load_template,
    load_templates,
    parse_template,
    plan_crew,
    shipped_dir,
    template_dirs,
    validate_inputs,
)

__all__ = [
    "INPUT_TYPES",
    "MAX_STRING_INPUT",
    "SUFFIX",
    "CrewPlan",
    "InputSpec",
    "JobSpec",
    "PlannedJob",
    "RenderedCrew",
    "Template",
    "load_template",
    "load_templates",
    "parse_template",
    "plan_crew",
    "plan_named_crew",
    "render_crew",
    "shipped_dir",
    "template_dirs",
    "validate_inputs",
]
