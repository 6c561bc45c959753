"""Layers point one way: board at the bottom; supervisor and web use board and
the neutral modules but never each other; the runner imports no server code.
The contracts live in pyproject.toml (``[tool.importlinter]``) and cover every
module, relative imports included; this runs them."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_import_contracts_are_kept(capsys):
    status = lint_imports(config_filenames=(str(PYPROJECT),), no_cache=True, no_logo=True)
    assert status == 0, capsys.readouterr().out
