"""Driving jobs for web tests without a supervisor: templates to start crews
from, and runs written straight to the board and the run's log the way the
supervisor and runner would write them."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

from crewboard.board import records
from crewboard.board.db import write
from crewboard.board.models import Job, JobStatus, Run, RunOutcome
from crewboard.clock import utcnow
from crewboard.home import Home
from crewboard.sessionlog import LogWriter, read_records
from crewboard.web.openapi import spec_text
from tests.conftest import signed_in

# a → b, a → c, (b, c) → d
DIAMOND = """\
name: Diamond
description: Four jobs, two in parallel.
inputs:
  topic: {type: string, required: true, maxLength: 200}
  words: {type: integer, default: 100, minimum: 10, maximum: 1000}
defaults: {agent: assistant, timeout: 120, retries: 2}
jobs:
  a:
    title: "Gather {{ inputs.topic }}"
    prompt: "Gather facts on {{ inputs.topic }}."
  b:
    needs: [a]
    prompt: "Summarise {{ inputs.topic }} in {{ inputs.words }} words."
  c:
    needs: [a]
    prompt: "List open questions on {{ inputs.topic }}."
  d:
    needs: [b, c]
    prompt: "Write the brief."
    artifact: brief.md
"""

BROKEN = """\
name: Broken
jobs:
  only:
    needs: [missing]
    prompt: "Never runs."
"""


def write_templates(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "diamond.job_workflow.yaml").write_text(DIAMOND)
    (folder / "broken.job_workflow.yaml").write_text(BROKEN)
    return folder


@write
def set_job(job_id: int, **values: Any) -> None:
    Job.update(**values).where(Job.id == job_id).execute()


@write
def start_run(job_id: int, home: Home, *, artifact: str | None = None) -> int:
    """What a dispatch does: the job goes running and gets a new run."""
    now = utcnow()
    Job.update(status=JobStatus.RUNNING, updated_at=now).where(Job.id == job_id).execute()
    attempt = Run.select().where(Run.job == job_id).count() + 1
    run = Run.create(
        job=job_id,
        attempt=attempt,
        outcome=RunOutcome.RUNNING,
        supervisor_id="test-supervisor",
        started_at=now,
        artifact=artifact,
    )
    run.log_path = str(home.run_log(run.id))
    run.save()
    return run.id


@write
def finish_run(run_id: int, outcome: str = RunOutcome.SUCCEEDED, result: str = "all done") -> None:
    """What finishing a run does: the run gets its outcome, the job is done
    (or blocked)."""
    now = utcnow()
    run = Run.get_by_id(run_id)
    Run.update(outcome=outcome, ended_at=now, exit_code=0).where(Run.id == run_id).execute()
    if outcome == RunOutcome.SUCCEEDED:
        values: dict[str, Any] = {"status": JobStatus.DONE, "result": result}
    else:
        values = {"status": JobStatus.BLOCKED, "blocked_reason": outcome}
    Job.update(updated_at=now, cancel_requested=False, **values).where(
        Job.id == run.job_id
    ).execute()


def job_row(job_id: int) -> Job | None:
    return Job.get_or_none(Job.id == job_id)


def ship_log(path: Path) -> None:
    """What the process running a runner does with its log on PostgreSQL:
    store its records in the board, where every web node reads them
    (nothing on SQLite, where the file is read)."""
    if not records.enabled():
        return
    key = records.log_key(path)
    assert key is not None, f"{path} is not a run's or chat's log"
    if key.startswith("run:"):
        records.Shipper(key, path).ship_new()
    else:
        records.store_missing(key, read_records(path))


class _ShippedLogWriter(LogWriter):
    """A run's log written by a test, shipped to the board once closed."""

    def close(self) -> None:
        super().close()
        ship_log(Path(self.path))


def log_writer(home: Home, run_id: int) -> LogWriter:
    return _ShippedLogWriter(home.run_log(run_id))


def save_artifact(home: Home, run_id: int, name: str, content: str | bytes) -> Path:
    folder = home.artifact_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


@functools.cache
def _spec() -> dict[str, Any]:
    return yaml.safe_load(spec_text())


def assert_conforms(instance: Any, schema: str) -> None:
    """``instance`` is valid against ``#/components/schemas/<schema>`` of
    openapi.yaml (the shapes SSE frames carry are checked nowhere else)."""
    validator = jsonschema_rs.Draft202012Validator(
        {**_spec(), "$ref": f"#/components/schemas/{schema}"}
    )
    problems = [f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(instance)]
    assert not problems, f"not a {schema}:\n" + "\n".join(problems)


# The harness's signed-in client, under the name other tests import it by.
signed_in_client = signed_in
