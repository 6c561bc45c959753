"""Workflow templates as pure logic: what a template file may say, how a
broken one is reported, how a crew's inputs are checked and its jobs planned."""

from __future__ import annotations

import json
import math
import textwrap
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from crewboard import workflows
from crewboard.agents import load_presets
from crewboard.config import Config
from crewboard.errors import ValidationFailed
from crewboard.workflows import Template, parse_template, plan_crew, validate_inputs

AGENTS = {"assistant", "researcher", "writer", "coder", "triage"}
T = TypeVar("T")

SPEC_EXAMPLE = """
name: Research brief
description: Research a topic and write a short brief.
inputs:
  topic:    {type: string, description: What to research, required: true}
  audience: {type: string, default: engineers, enum: [engineers, executives]}
  words:    {type: integer, default: 300, minimum: 50, maximum: 2000}
defaults: {agent: assistant, timeout: 600, retries: 1}
jobs:
  research:
    title: "Research {{ inputs.topic }}"
    agent: researcher
    prompt: "Research {{ inputs.topic }} for {{ inputs.audience }}."
  brief:
    needs: [research]
    agent: writer
    prompt: "Write a {{ inputs.words }}-word brief from the research."
    artifact: brief.md
"""


def make(text: str, agents: set[str] = AGENTS) -> Template:
    return parse_template("t", textwrap.dedent(text), agents)


def one_job(prompt: str, inputs: str = "", title: str | None = None) -> Template:
    """A template with one job, the given prompt and input declarations."""
    lines = ["name: T"]
    if inputs:
        lines += ["inputs:", textwrap.indent(textwrap.dedent(inputs).strip(), "  ")]
    lines += ["jobs:", "  only:", f"    prompt: {json.dumps(prompt)}"]
    if title is not None:
        lines.append(f"    title: {json.dumps(title)}")
    return parse_template("t", "\n".join(lines) + "\n", AGENTS)


# Far below what any refused prompt or YAML would take if it were built
# (a 100 MB string, an 800 MB list, a 9**9-item document).
FEW_BYTES = 16 * 2**20


def most_memory_held(build: Callable[[], T]) -> tuple[T, int]:
    """What ``build()`` returns, and the most memory it held at once (bytes,
    as tracemalloc counts them): a cost that does not depend on the machine."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        value = build()
        return value, tracemalloc.get_traced_memory()[1] - before
    finally:
        if not tracing:
            tracemalloc.stop()


def error_of(template: Template) -> str:
    assert not template.valid, "expected the template to be invalid"
    assert template.error is not None
    return template.error


# -- the spec's example and the shipped templates ---------------------------


def test_the_spec_example_loads_and_lists_its_inputs_as_json_schema():
    template = make(SPEC_EXAMPLE)
    assert template.valid
    assert template.public() == {
        "id": "t",
        "name": "Research brief",
        "description": "Research a topic and write a short brief.",
        "inputs": {
            "type": "object",
            "properties": {
                "topic": {
                    "type": "string",
                    "description": "What to research",
                    "maxLength": 100_000,
                },
                "audience": {
                    "type": "string",
                    "default": "engineers",
                    "enum": ["engineers", "executives"],
                },
                "words": {"type": "integer", "default": 300, "minimum": 50, "maximum": 2000},
            },
            "required": ["topic"],
            "additionalProperties": False,
        },
        "valid": True,
    }


def test_the_spec_example_plans_a_crew():
    plan = plan_crew(make(SPEC_EXAMPLE), {"topic": "solid-state batteries"})
    assert plan.template_id == "t"
    assert plan.title == "Research brief"
    assert plan.inputs == {"topic": "solid-state batteries", "audience": "engineers", "words": 300}
    research, brief = plan.jobs
    assert research.key == "research"
    assert research.title == "Research solid-state batteries"
    assert research.agent == "researcher"
    assert research.prompt == "Research solid-state batteries for engineers."
    assert (research.needs, research.artifact, research.timeout_s, research.retries) == (
        (),
        None,
        600,
        1,
    )
    assert brief.title == "brief"  # no title in the template: the job's name
    assert brief.prompt == "Write a 300-word brief from the research."
    assert (brief.agent, brief.needs, brief.artifact) == ("writer", ("research",), "brief.md")


def shipped_agent_ids() -> set[str]:
    presets, errors = load_presets()
    assert not errors
    return set(presets)


def sample_inputs(template: Template) -> dict:
    values = {
        "string": "Something to work on, ünïcödé included ✓",
        "integer": 3,
        "number": 1.5,
        "boolean": True,
    }
    inputs = {}
    for spec in template.inputs:
        if spec.required:
            inputs[spec.name] = spec.enum[0] if spec.enum else values[spec.type]
    return inputs


def test_every_shipped_template_is_valid_and_plans_a_crew():
    agents = shipped_agent_ids()
    assert {"assistant", "researcher", "writer", "coder"} <= agents
    templates = workflows.load_templates([workflows.shipped_dir()], agents)
    assert len(templates) >= 3
    assert {"research-brief", "ask"} <= set(templates)
    for template in templates.values():
        assert template.valid, template.error
        assert template.description
        plan = plan_crew(template, sample_inputs(template))
        assert plan.jobs
        for job in plan.jobs:
            assert job.agent in agents
            assert job.prompt and len(job.title) <= 200


def test_shipped_templates_use_the_optional_inputs_when_given():
    templates = workflows.load_templates([workflows.shipped_dir()], AGENTS)
    plan = plan_crew(templates["ask"], {"question": "Why?", "context": "Because of X."})
    assert "Because of X." in plan.jobs[0].prompt
    plan = plan_crew(templates["ask"], {"question": "Why?"})
    assert "Context" not in plan.jobs[0].prompt
    plan = plan_crew(templates["notes-digest"], {"notes": "n", "period": "day"})
    assert plan.jobs[-1].title == "Daily digest"


# -- discovery ----------------------------------------------------------------


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


ASK = """
name: {name}
jobs:
  only: {{prompt: Hello}}
"""


def test_later_folders_override_by_id_and_other_files_are_ignored(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    write(first, "greet.job_workflow.yaml", ASK.format(name="First greet"))
    write(first, "keep.job_workflow.yaml", ASK.format(name="Kept"))
    write(second, "greet.job_workflow.yaml", ASK.format(name="Second greet"))
    write(second, "notes.yaml", ASK.format(name="Not a template"))
    write(second, "greet.job_workflow.yml", ASK.format(name="Wrong suffix"))
    templates = workflows.load_templates([first, second, tmp_path / "missing"], AGENTS)
    assert sorted(templates) == ["greet", "keep"]
    assert templates["greet"].name == "Second greet"
    assert templates["keep"].name == "Kept"


def test_an_override_that_is_broken_is_listed_broken(tmp_path):
    write(tmp_path / "a", "greet.job_workflow.yaml", ASK.format(name="Good"))
    write(tmp_path / "b", "greet.job_workflow.yaml", "jobs: [nope]")
    templates = workflows.load_templates([tmp_path / "a", tmp_path / "b"], AGENTS)
    assert not templates["greet"].valid


def test_files_with_unsafe_ids_are_skipped(tmp_path):
    write(tmp_path, "has space.job_workflow.yaml", ASK.format(name="x"))
    write(tmp_path, "ünï.job_workflow.yaml", ASK.format(name="x"))
    write(tmp_path, "ok_id-2.job_workflow.yaml", ASK.format(name="x"))
    assert list(workflows.load_templates([tmp_path], AGENTS)) == ["ok_id-2"]


def test_template_dirs_are_the_shipped_folder_then_configured_ones(tmp_path):
    config = Config(workflows=(tmp_path / "x", tmp_path / "y"))
    dirs = workflows.template_dirs(config)
    assert dirs[1:] == [tmp_path / "x", tmp_path / "y"]
    assert (dirs[0] / "research-brief.job_workflow.yaml").is_file()


def test_an_oversized_file_is_invalid_without_being_parsed(tmp_path):
    path = write(tmp_path, "big.job_workflow.yaml", "# " + "x" * 300_000 + "\n")
    template = workflows.load_template(path, AGENTS)
    assert "big.job_workflow.yaml: larger than" in error_of(template)


def test_a_file_that_is_not_utf8_is_invalid(tmp_path):
    path = tmp_path / "latin.job_workflow.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    assert "not UTF-8" in error_of(workflows.load_template(path, AGENTS))


def test_an_unreadable_entry_is_invalid(tmp_path):
    (tmp_path / "dir.job_workflow.yaml").mkdir()
    template = workflows.load_templates([tmp_path], AGENTS)["dir"]
    assert "dir.job_workflow.yaml: cannot be read" in error_of(template)


def test_an_invalid_template_still_lists_what_it_could_read(tmp_path):
    write(
        tmp_path,
        "half.job_workflow.yaml",
        """
        name: Half done
        description: Its job is broken.
        inputs:
          topic: {type: string, required: true}
        jobs:
          only: {prompt: "{{ inputs.topic }}", agent: nobody}
    """,
    )
    public = workflows.load_templates([tmp_path], AGENTS)["half"].public()
    assert public["valid"] is False
    assert public["name"] == "Half done"
    assert public["inputs"]["required"] == ["topic"]
    assert public["error"].startswith("half.job_workflow.yaml: jobs.only.agent: unknown agent")
    assert str(tmp_path) not in public["error"]


# -- YAML ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("name: [unclosed", "not valid YAML at line"),
        ("jobs:\n  a: {prompt: x}\n   b: 1\n", "not valid YAML"),
        ("", "must be a YAML mapping"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("just text", "must be a YAML mapping"),
        ("name: x\nname: y\njobs: {a: {prompt: p}}\n", "key 'name' appears twice"),
        ("jobs:\n  a: {prompt: p}\n  a: {prompt: q}\n", "key 'a' appears twice"),
        ("!!python/object/apply:os.system ['true']", "could not determine a constructor"),
        ("name: !!python/name:os.system\njobs: {a: {prompt: p}}", "could not determine"),
        ("jobs: {a: {prompt: !!binary aGk=}}", "jobs.a.prompt: must be text"),
        ("jobs: {a: {prompt: p}}\nextra: 1\n", "unknown key 'extra'"),
        ("jobs: {on: {prompt: p}}\n", "jobs: name 'true' must be text (quote it"),
        ("jobs: {a: {prompt: p}}\ninputs: {yes: {type: string}}\n", "must be text"),
    ],
)
def test_bad_yaml_is_reported_never_raised(text, complaint):
    assert complaint in error_of(parse_template("t", text, AGENTS))


def test_python_tags_are_not_executed(tmp_path):
    marker = tmp_path / "ran"
    text = f"!!python/object/apply:os.system ['touch {marker}']\n"
    assert not parse_template("t", text, AGENTS).valid
    assert not marker.exists()


def test_aliases_do_not_blow_up():
    bomb = "a: &a ['x','x','x','x','x','x','x','x','x']\n"
    for i in range(1, 9):
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 9) + "]\n"
    template, held = most_memory_held(lambda: parse_template("t", bomb, AGENTS))
    assert "unknown key" in error_of(template)
    assert held < FEW_BYTES  # expanded, the bomb is 9**9 items


# -- inputs declarations ------------------------------------------------------


@pytest.mark.parametrize(
    ("declaration", "complaint"),
    [
        ("x: {description: no type}", "inputs.x.type: must be one of string, integer"),
        ("x: {type: text}", "inputs.x.type: must be one of"),
        ("x: {type: string, default: 5}", "inputs.x.default: must be a string"),
        ("x: {type: integer, default: 1.5}", "inputs.x.default: must be an integer"),
        ("x: {type: integer, default: true}", "inputs.x.default: must be an integer"),
        ("x: {type: number, default: .nan}", "inputs.x.default: must be a finite number"),
        ("x: {type: number, default: .inf}", "inputs.x.default: must be a finite number"),
        ("x: {type: boolean, default: 1}", "inputs.x.default: must be true or false"),
        ("x: {type: string, default: c, enum: [a, b]}", "inputs.x.default: must be one of: a, b"),
        ("x: {type: integer, default: 1, minimum: 5}", "inputs.x.default: must be at least 5"),
        ("x: {type: integer, default: 9, maximum: 5}", "inputs.x.default: must be at most 5"),
        ("x: {type: string, default: abcd, maxLength: 3}", "must be at most 3 characters"),
        ("x: {type: string, required: true, default: a}", "a required input cannot have a def"),
        ("x: {type: string, required: 'yes'}", "inputs.x.required: must be true or false"),
        ("x: {type: integer, minimum: 5, maximum: 1}", "minimum is greater than maximum"),
        ("x: {type: integer, minimum: 1.5}", "inputs.x.minimum: must be an integer"),
        ("x: {type: number, maximum: ten}", "inputs.x.maximum: must be a number"),
        ("x: {type: string, minimum: 1}", "minimum: does not apply to a string input"),
        ("x: {type: integer, maxLength: 5}", "maxLength: does not apply to a integer"),
        ("x: {type: string, maxLength: -1}", "inputs.x.maxLength: must be a whole number"),
        ("x: {type: string, maxLength: 1000001}", "inputs.x.maxLength: must be a whole number"),
        ("x: {type: string, enum: []}", "inputs.x.enum: must be a list of 1-100 values"),
        ("x: {type: string, enum: a}", "inputs.x.enum: must be a list"),
        ("x: {type: string, enum: [a, 1]}", "inputs.x.enum: '1' must be a string"),
        ("x: {type: string, enum: [yes, no]}", "'true' must be a string"),
        ("x: {type: string, enum: [a, a]}", "lists a value twice"),
        ("x: {type: integer, enum: [1, 50], maximum: 10}", "'50' must be at most 10"),
        ("x: {type: string, format: email}", "inputs.x: unknown key 'format'"),
        ("x: {type: string, description: [a]}", "inputs.x.description: must be text"),
        ("x: string", "inputs.x: must be a mapping"),
        ("1x: {type: string}", "'1x' is not a valid input name"),
        ("a-b: {type: string}", "'a-b' is not a valid input name"),
        ("ünï: {type: string}", "is not a valid input name"),
    ],
)
def test_bad_input_declarations_are_named(declaration, complaint):
    template = one_job("Hello", inputs=declaration)
    error = error_of(template)
    assert error.startswith("t.job_workflow.yaml: ")
    assert complaint in error


def test_input_declarations_that_are_fine():
    template = one_job(
        "{{ inputs.a }} {{ inputs.b }} {{ inputs.c }} {{ inputs.d }} {{ inputs.e }}",
        inputs="""
            a: {type: string, maxLength: 0, default: ""}
            b: {type: number, minimum: 0.5, maximum: 2, default: 1}
            c: {type: integer, enum: [1, 2, 3], default: 2, description: "Pick one ✓"}
            d: {type: boolean, default: false}
            e: {type: number, enum: [1.5, 2], required: true}
        """,
    )
    assert template.valid, template.error
    schema = template.input_schema()
    assert schema["properties"]["a"] == {"type": "string", "default": "", "maxLength": 0}
    assert schema["properties"]["c"]["description"] == "Pick one ✓"
    assert schema["required"] == ["e"]


def test_too_many_inputs():
    declarations = "\n".join(f"i{n}: {{type: string}}" for n in range(51))
    assert "inputs: at most 50 inputs" in error_of(one_job("Hello", inputs=declarations))


# -- defaults and jobs --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("defaults: {agent: nobody}\njobs: {a: {prompt: p}}", "defaults.agent: unknown agent"),
        ("defaults: {timeout: 0}\njobs: {a: {prompt: p}}", "defaults.timeout: must be a whole"),
        ("defaults: {timeout: 10m}\njobs: {a: {prompt: p}}", "defaults.timeout"),
        ("defaults: {timeout: true}\njobs: {a: {prompt: p}}", "defaults.timeout"),
        ("defaults: {retries: -1}\njobs: {a: {prompt: p}}", "defaults.retries"),
        ("defaults: {retries: 11}\njobs: {a: {prompt: p}}", "defaults.retries"),
        ("defaults: {model: x}\njobs: {a: {prompt: p}}", "defaults: unknown key 'model'"),
        ("defaults: [a]\njobs: {a: {prompt: p}}", "defaults: must be a mapping"),
        ("name: x", "jobs: a template needs at least one job"),
        ("jobs: {}", "jobs: a template needs at least one job"),
        ("jobs:", "a template needs at least one job"),
        ("jobs: [a, b]", "jobs: must be a mapping"),
        ("jobs: {a: hello}", "jobs.a: must be a mapping"),
        ("jobs: {a: {title: t}}", "jobs.a.prompt: must be text"),
        ("jobs: {a: {prompt: '  '}}", "jobs.a.prompt: must not be empty"),
        ("jobs: {a: {prompt: 5}}", "jobs.a.prompt: must be text"),
        ("jobs: {a: {prompt: p, title: [x]}}", "jobs.a.title: must be text"),
        ("jobs: {a: {prompt: p, agent: nobody}}", "jobs.a.agent: unknown agent 'nobody'"),
        ("jobs: {a: {prompt: p, agent: 5}}", "jobs.a.agent: unknown agent"),
        ("jobs: {a: {prompt: p, needs: [b]}}", "jobs.a.needs: unknown job 'b'"),
        ("jobs: {a: {prompt: p, needs: b}}", "jobs.a.needs: unknown job 'b'"),
        ("jobs: {a: {prompt: p, needs: {b: 1}}}", "jobs.a.needs: must be a list of job names"),
        ("jobs: {a: {prompt: p, needs: [1]}}", "jobs.a.needs: must be a list of job names"),
        ("jobs: {a: {prompt: p}, b: {prompt: p, needs: [a, a]}}", "names a job twice"),
        ("jobs: {a: {prompt: p, needs: [a]}}", "needs form a cycle: a -> a"),
        ("jobs: {a: {prompt: p, timeout: 700000}}", "jobs.a.timeout: must be a whole number"),
        ("jobs: {a: {prompt: p, retries: 1.0}}", "jobs.a.retries: must be a whole number"),
        ("jobs: {a: {prompt: p, after: b}}", "jobs.a: unknown key 'after'"),
        ("jobs: {a b: {prompt: p}}", "'a b' is not a valid job name"),
        ("jobs: {jöb: {prompt: p}}", "is not a valid job name"),
        ("jobs: {a: {prompt: p, artifact: ../etc/passwd}}", "jobs.a.artifact: must be a plain"),
        ("jobs: {a: {prompt: p, artifact: out/brief.md}}", "jobs.a.artifact"),
        ("jobs: {a: {prompt: p, artifact: 'out\\\\brief.md'}}", "jobs.a.artifact"),
        ("jobs: {a: {prompt: p, artifact: ..}}", "jobs.a.artifact"),
        ("jobs: {a: {prompt: p, artifact: .hidden}}", "jobs.a.artifact"),
        ("jobs: {a: {prompt: p, artifact: a..b}}", "jobs.a.artifact"),
        ("jobs: {a: {prompt: p, artifact: /tmp/x}}", "jobs.a.artifact"),
        ("jobs: {a: {prompt: p, artifact: ''}}", "jobs.a.artifact"),
        ("jobs: {a: {prompt: p, artifact: 5}}", "jobs.a.artifact"),
        ("name: [x]\njobs: {a: {prompt: p}}", "name: must be text"),
        ("description: " + "d" * 2001 + "\njobs: {a: {prompt: p}}", "description: must be text"),
    ],
)
def test_bad_jobs_and_defaults_are_named(text, complaint):
    error = error_of(parse_template("t", text, AGENTS))
    assert error.startswith("t.job_workflow.yaml: ")
    assert complaint in error


def test_a_cycle_is_reported_as_a_path():
    template = make("""
        jobs:
          a: {prompt: p}
          b: {prompt: p, needs: [a, d]}
          c: {prompt: p, needs: [b]}
          d: {prompt: p, needs: [c]}
    """)
    assert "needs form a cycle: b -> d -> c -> b" in error_of(template)


def test_too_many_jobs():
    jobs = "\n".join(f"  j{n}: {{prompt: p}}" for n in range(51))
    assert "jobs: at most 50 jobs" in error_of(parse_template("t", "jobs:\n" + jobs, AGENTS))


def test_defaults_apply_to_jobs_that_do_not_say():
    template = make("""
        defaults: {agent: coder, timeout: 30, retries: 2}
        jobs:
          a: {prompt: p}
          b: {prompt: p, agent: writer, timeout: 60, retries: 0}
    """)
    a, b = template.jobs
    assert (a.agent, a.timeout_s, a.retries) == ("coder", 30, 2)
    assert (b.agent, b.timeout_s, b.retries) == ("writer", 60, 0)


def test_built_in_defaults():
    (job,) = make("jobs: {a: {prompt: p}}").jobs
    assert (job.agent, job.timeout_s, job.retries) == ("assistant", 600, 0)
    assert "unknown agent 'assistant'" in error_of(make("jobs: {a: {prompt: p}}", {"writer"}))


def test_every_problem_is_reported_and_long_lists_are_cut():
    jobs = "\n".join(f"  j{n}: {{prompt: p, agent: nobody{n}}}" for n in range(14))
    error = error_of(parse_template("t", "jobs:\n" + jobs, AGENTS))
    assert "jobs.j0.agent" in error and "jobs.j9.agent" in error
    assert "jobs.j10.agent" not in error
    assert error.endswith("(and 4 more)")


def test_jobs_are_ordered_parents_first_then_in_file_order():
    template = make("""
        jobs:
          report: {prompt: p, needs: [left, right]}
          right: {prompt: p, needs: [root]}
          left: {prompt: p, needs: [root]}
          root: {prompt: p}
          lone: {prompt: p}
    """)
    assert [job.key for job in template.jobs] == ["root", "right", "left", "report", "lone"]
    plan = plan_crew(template, {})
    assert [job.key for job in plan.jobs] == ["root", "right", "left", "report", "lone"]
    assert plan.jobs[3].needs == ("left", "right")


# -- prompts and the sandbox -------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "complaint"),
    [
        ("{{ inputs.topic ", "template syntax error at line 1"),
        ("{% if inputs.topic %}open", "template syntax error"),
        ("{{ topic }}", "unknown name 'topic' (inputs are written inputs.<name>)"),
        ("{{ inputs.topc }}", "inputs.topc is not an input of this template"),
        ("{{ inputs['topc'] }}", "inputs.topc is not an input"),
        ("{% if false %}{{ inputs.nope }}{% endif %}", "inputs.nope is not an input"),
        ("{{ ''.__class__.__mro__ }}", "'__class__': private attributes are not available"),
        ("{{ inputs.__class__ }}", "private attributes"),
        ("{{ inputs['__class__'] }}", "private attributes"),
        ("{{ inputs.topic._x }}", "private attributes"),
        ("{{ inputs|attr('__class__') }}", "SecurityError"),
        ("{{ (inputs|attr('items'))() }}", None),
        ("{{ cycler.__init__.__globals__ }}", "unknown name 'cycler'"),
        ("{{ lipsum(100) }}", "unknown name 'lipsum'"),
        ("{{ config }}", "unknown name 'config'"),
        ("{% include 'other' %}", "include is not available"),
        ("{% import 'm' as m %}", "import is not available"),
        ("{% from 'm' import x %}", "fromimport is not available"),
        ("{% extends 'base' %}", "extends is not available"),
        ("{{ 'x' * 100000000 }}", "repetition result too large"),
        ("{{ [1] * 100000000 }}", "repetition result too large"),
        ("{{ 2 ** 100000000 }}", "power result too large"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ inputs.topic + 1 }}", "TypeError"),
        ("{{ inputs.topic.format(1) }}", None),
        ("{{ range(100001)|list }}", "Range too big"),
        ("{% for i in range(3) %}{{ inputs.topic }}{% endfor %}", None),
        ("", "must not be empty"),
        ("{% if false %}x{% endif %}", "renders empty"),
    ],
)
def test_prompts_are_checked_in_the_sandbox(prompt, complaint):
    template, held = most_memory_held(
        lambda: one_job(prompt, inputs="topic: {type: string, required: true}")
    )
    assert held < FEW_BYTES  # refused before it is built, not after
    if complaint is None:
        assert template.valid, template.error
    else:
        error = error_of(template)
        assert complaint in error
        assert "Traceback" not in error


def test_titles_are_checked_like_prompts():
    template = one_job("p", inputs="topic: {type: string}", title="{{ inputs.tpoic }}")
    assert "jobs.only.title: inputs.tpoic is not an input" in error_of(template)


def test_an_optional_input_without_default_must_be_guarded():
    unguarded = one_job("Notes: {{ inputs.notes }}", inputs="notes: {type: string}")
    error = error_of(unguarded)
    assert "jobs.only.prompt" in error and "'is defined'" in error
    guarded = one_job(
        "{% if inputs.notes is defined %}Notes: {{ inputs.notes }}{% else %}None{% endif %}",
        inputs="notes: {type: string}",
    )
    assert guarded.valid, guarded.error
    assert plan_crew(guarded, {}).jobs[0].prompt == "None"
    assert plan_crew(guarded, {"notes": "n"}).jobs[0].prompt == "Notes: n"


def test_inputs_are_data_never_template_text():
    template = one_job("Topic: {{ inputs.topic }}", inputs="topic: {type: string, default: x}")
    hostile = "{{ ''.__class__.__mro__ }} {% for x in range(10**9) %}{% endfor %} {{ 7 * 7 }}"
    plan = plan_crew(template, {"topic": hostile})
    assert plan.jobs[0].prompt == "Topic: " + hostile


def test_a_render_failure_at_plan_time_is_a_validation_error_without_traceback():
    template = one_job(
        "{{ inputs.total // inputs.parts }} each",
        inputs="""
            total: {type: integer, default: 10}
            parts: {type: integer, default: 2}
        """,
    )
    assert plan_crew(template, {}).jobs[0].prompt == "5 each"
    with pytest.raises(ValidationFailed) as caught:
        plan_crew(template, {"parts": 0})
    assert caught.value.fields == {
        "inputs": "jobs.only.prompt: cannot be rendered: ZeroDivisionError: "
        "integer division or modulo by zero"
    }


def test_an_optional_input_used_on_a_branch_the_trial_did_not_take():
    template = one_job(
        "{% if inputs.detailed %}{{ inputs.extra }}{% else %}short{% endif %}",
        inputs="""
            detailed: {type: boolean, default: false}
            extra: {type: string}
        """,
    )
    assert template.valid
    with pytest.raises(ValidationFailed) as caught:
        plan_crew(template, {"detailed": True})
    assert "jobs.only.prompt" in caught.value.fields["inputs"]
    assert "extra" in caught.value.fields["inputs"]


def test_a_prompt_that_renders_too_long_is_refused():
    template = one_job(
        "{% for i in range(3) %}{{ inputs.text }}{% endfor %}",
        inputs="text: {type: string, required: true}",
    )
    with pytest.raises(ValidationFailed) as caught:
        plan_crew(template, {"text": "x" * 100_000})
    assert "renders longer than 200000 characters" in caught.value.fields["inputs"]


# -- validating a crew's inputs ----------------------------------------------

TYPED = """
name: Typed
inputs:
  text:   {type: string, maxLength: 10}
  count:  {type: integer, minimum: 1, maximum: 5}
  ratio:  {type: number, minimum: 0, maximum: 1}
  flag:   {type: boolean}
  colour: {type: string, enum: [red, green]}
  size:   {type: integer, default: 3, enum: [1, 3, 5]}
  need:   {type: string, required: true}
jobs:
  only: {prompt: "{{ inputs.need }}"}
"""


@pytest.fixture
def typed() -> Template:
    template = make(TYPED)
    assert template.valid, template.error
    return template


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("text", 5, "must be a string"),
        ("text", None, "must be a string"),
        ("text", ["a"], "must be a string"),
        ("text", "x" * 11, "must be at most 10 characters"),
        ("text", "a\x00b", "must not contain NUL characters"),
        ("count", True, "must be an integer"),
        ("count", 2.0, "must be an integer"),
        ("count", "2", "must be an integer"),
        ("count", 0, "must be at least 1"),
        ("count", 6, "must be at most 5"),
        ("count", 10**100, "must be at most 5"),
        ("ratio", True, "must be a finite number"),
        ("ratio", math.nan, "must be a finite number"),
        ("ratio", math.inf, "must be a finite number"),
        ("ratio", -math.inf, "must be a finite number"),
        ("ratio", "0.5", "must be a finite number"),
        ("ratio", 1.5, "must be at most 1"),
        ("ratio", -0.1, "must be at least 0"),
        ("flag", 1, "must be true or false"),
        ("flag", "true", "must be true or false"),
        ("flag", None, "must be true or false"),
        ("colour", "blue", "must be one of: red, green"),
        ("colour", "RED", "must be one of: red, green"),
        ("size", 2, "must be one of: 1, 3, 5"),
        ("size", True, "must be an integer"),
        ("need", "", None),
    ],
)
def test_each_wrong_value_is_named(typed, name, value, complaint):
    inputs = {"need": "x", name: value}
    if complaint is None:
        assert validate_inputs(typed, inputs)[name] == value
        return
    with pytest.raises(ValidationFailed) as caught:
        validate_inputs(typed, inputs)
    assert caught.value.fields == {name: complaint}


def test_every_bad_field_is_reported_at_once(typed):
    with pytest.raises(ValidationFailed) as caught:
        validate_inputs(typed, {"text": 1, "count": True, "tpoic": "x", "ratio": math.nan})
    assert caught.value.fields == {
        "text": "must be a string",
        "count": "must be an integer",
        "ratio": "must be a finite number",
        "tpoic": "is not an input of this template",
        "need": "is required",
    }


def test_defaults_are_applied_and_nothing_else_is_invented(typed):
    assert validate_inputs(typed, {"need": "x"}) == {"need": "x", "size": 3}


def test_good_values_at_the_edges_pass_through_unchanged(typed):
    inputs = {
        "text": "ü" * 10,
        "count": 5,
        "ratio": 0,
        "flag": False,
        "colour": "green",
        "size": 5,
        "need": "日本語 ✓",
    }
    values = validate_inputs(typed, inputs)
    assert values == inputs
    assert type(values["ratio"]) is int  # an integer is a number; it is not turned into a float


@pytest.mark.parametrize("inputs", [None, [], "need=x", 5, ["need", "x"]])
def test_inputs_must_be_an_object(typed, inputs):
    with pytest.raises(ValidationFailed) as caught:
        validate_inputs(typed, inputs)
    assert caught.value.fields == {"inputs": "must be an object"}


def test_a_flood_of_unknown_inputs_is_one_error(typed):
    with pytest.raises(ValidationFailed) as caught:
        validate_inputs(typed, {f"k{n}": n for n in range(10_000)})
    assert list(caught.value.fields) == ["inputs"]


def test_a_huge_unknown_input_name_is_shortened(typed):
    with pytest.raises(ValidationFailed) as caught:
        validate_inputs(typed, {"need": "x", "k" * 100_000: 1})
    (name,) = caught.value.fields
    assert len(name) <= 65


def test_string_inputs_have_a_ceiling_even_without_maxlength():
    template = one_job("{{ inputs.body }}", inputs="body: {type: string, required: true}")
    assert validate_inputs(template, {"body": "é" * 100_000})
    with pytest.raises(ValidationFailed) as caught:
        validate_inputs(template, {"body": "é" * 100_001})
    assert caught.value.fields == {"body": "must be at most 100000 characters"}


def test_an_invalid_template_cannot_be_used():
    broken = make("jobs: {a: {prompt: p, needs: [zz]}}")
    for call in (lambda: validate_inputs(broken, {}), lambda: plan_crew(broken, {})):
        with pytest.raises(ValidationFailed) as caught:
            call()
        assert "unknown job 'zz'" in caught.value.fields["templateId"]


# -- crew titles ----------------------------------------------------------------


def test_a_crew_title_names_a_single_job():
    template = one_job("p", title="Default title")
    assert plan_crew(template, {}).jobs[0].title == "Default title"
    plan = plan_crew(template, {}, title="  My   own\ttitle ")
    assert plan.title == "My own title"
    assert plan.jobs[0].title == "My own title"
    assert plan_crew(template, {}, title="").jobs[0].title == "Default title"


def test_a_crew_title_prefixes_each_job_of_a_larger_crew():
    plan = plan_crew(make(SPEC_EXAMPLE), {"topic": "tides"}, title="Q3 scan")
    assert [job.title for job in plan.jobs] == ["Q3 scan: Research tides", "Q3 scan: brief"]
    assert plan.title == "Q3 scan"


@pytest.mark.parametrize(
    ("title", "complaint"), [(5, "must be a string"), ("t" * 201, "at most 200 characters")]
)
def test_bad_crew_titles_are_refused(title, complaint):
    with pytest.raises(ValidationFailed) as caught:
        plan_crew(one_job("p"), {}, title=title)
    assert complaint in caught.value.fields["title"]


def test_rendered_titles_are_one_line_and_clipped():
    template = one_job(
        "p", inputs="topic: {type: string, default: x}", title="Re: {{ inputs.topic }}"
    )
    plan = plan_crew(template, {"topic": "line one\nline two " + "x" * 500})
    title = plan.jobs[0].title
    assert title.startswith("Re: line one line two x")
    assert len(title) == 200 and title.endswith("…")


# -- a crew named by template id, as a schedule names it ----------------------


def test_a_named_crew_is_planned_from_its_template():
    templates = {"t": make(SPEC_EXAMPLE)}
    plan = workflows.plan_named_crew(templates, "t", {"topic": "tides"})
    assert plan.template_id == "t" and plan.jobs[0].prompt.startswith("Research tides")
    rendered = workflows.render_crew(templates, "t", {"topic": "tides"})
    assert rendered.plan == plan and not rendered.problem
    assert (rendered.template_id, rendered.inputs) == ("t", {"topic": "tides"})


@pytest.mark.parametrize(
    ("template_id", "inputs", "field"),
    [
        ("gone", {"topic": "tides"}, "templateId"),
        ("t", {}, "inputs.topic"),
        ("t", {"topic": "tides", "extra": 1}, "inputs.extra"),
        ("t", "tides", "inputs"),
    ],
)
def test_a_named_crew_that_cannot_be_made_names_the_field_as_the_api_does(
    template_id, inputs, field
):
    templates = {"t": make(SPEC_EXAMPLE)}
    with pytest.raises(ValidationFailed) as caught:
        workflows.plan_named_crew(templates, template_id, inputs)
    assert field in caught.value.fields
    # As a value, for a fire that records its failure instead of refusing.
    rendered = workflows.render_crew(templates, template_id, inputs)
    assert rendered.plan is None and rendered.problem.startswith(f"{field}: ")
