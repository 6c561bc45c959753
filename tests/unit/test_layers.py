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


# What the runner template must not carry into every runner it forks.
TEMPLATE_MODULES = (
    "import sys; from crewboard.runner import template; template._preload(); "
    "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
)


def test_the_runner_template_preloads_httpx_without_its_command_line_client():
    # httpx pulls in rich, click and pygments for its CLI whenever they are
    # installed (they are, beside the mcp extra); runners never use them.
    done = subprocess.run(
        [sys.executable, "-c", TEMPLATE_MODULES], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "httpx" in loaded
    assert not loaded & {"rich", "click", "pygments", "trio", "peewee", "quart"}
