"""Layers point one way: board at the bottom; supervisor and web use board and
the neutral modules but never each other; the runner imports no server code.
The contracts live in pyproject.toml (``[tool.importlinter]``) and cover every
module, relative imports included; this runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# In a process of its own: import-linter reconfigures logging for the process it runs in.
LINT_IMPORTS = (
    "import sys; from importlinter.cli import lint_imports; "
    "sys.exit(lint_imports(config_filenames=('pyproject.toml',), no_cache=True, no_logo=True))"
)


def test_import_contracts_are_kept():
    done = subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
