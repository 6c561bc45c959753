"""A non-editable install carries the presets, templates and API contract."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_presets_templates_openapi_and_the_client(tmp_path):
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("crewboard-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, suffix in (("agents", ".agent.yaml"), ("workflows", ".job_workflow.yaml")):
        shipped = {p.name for p in (ROOT / folder).glob(f"*{suffix}")}
        assert shipped, folder
        assert {f"crewboard/_shipped/{folder}/{name}" for name in shipped} <= names
    assert "crewboard/_shipped/openapi.yaml" in names
    static = {
        f"crewboard/web/static/{p.name}"
        for p in (ROOT / "src/crewboard/web/static").glob("*")
        if p.is_file()
    }
    assert static <= names
    assert any(n.endswith("entry_points.txt") for n in names)
