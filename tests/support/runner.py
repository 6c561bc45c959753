"""Helpers for tests of the runner and its tools: a tool context in a temp
dir, and runner specs on the offline model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crewboard.netguard import Resolver
from crewboard.runner.spec import Limits
from crewboard.runner.tools.base import ToolContext, system_resolver


def tool_context(
    tmp_path: Path, resolver: Resolver = system_resolver, **limits: Any
) -> ToolContext:
    """A context with an empty workspace and artifact folder under ``tmp_path``."""
    workspace = tmp_path / "workspaces" / "1"
    workspace.mkdir(parents=True)
    return ToolContext(
        workspace=workspace,
        artifact_dir=tmp_path / "artifacts" / "1",
        limits=Limits(**limits),
        resolver=resolver,
    )


PRESETS: dict[str, dict[str, Any]] = {
    "triage": {
        "id": "triage",
        "name": "Triage",
        "description": "Routes requests.",
        "instructions": "Route the request.",
        "tools": ["block"],
        "handoffs": ["writer"],
    },
    "writer": {
        "id": "writer",
        "name": "Writer",
        "description": "Writes.",
        "instructions": "Write it.",
        "tools": ["read_file", "write_file", "list_files", "save_artifact", "shell", "http_get"],
        "handoffs": [],
    },
}


def offline_spec(home: Path, prompt: str, run_id: str = "1", **extra: Any) -> dict[str, Any]:
    """A runner spec on the offline model with the data home's usual layout."""
    spec: dict[str, Any] = {
        "runId": run_id,
        "kind": "job",
        "agentId": "writer",
        "agents": PRESETS,
        "model": {
            "spec": "offline:scripted",
            "provider": "offline",
            "name": "scripted",
            "baseUrl": None,
            "apiKey": None,
        },
        "messages": [],
        "prompt": prompt,
        "workspace": str(home / "workspaces" / run_id),
        "logPath": str(home / "logs" / "runs" / f"{run_id}.jsonl"),
        "artifactDir": str(home / "artifacts" / run_id),
        "artifact": None,
        "limits": {"maxSteps": 10, "toolTimeoutS": 10},
    }
    spec.update(extra)
    return spec
