"""Where a tool's subprocess runs: a scrubbed environment, resource limits and,
where Debian's ``bwrap`` (bubblewrap) exists, a sandbox.

Inside bubblewrap a command sees the system folders (``/usr``, ``/etc``, …)
read-only, its run's workspace read-write, a private ``/tmp``, fresh ``/proc``
and ``/dev``, no network, and nothing else: not the data home (board, logs,
secret key, other runs), not the runner (a separate PID namespace), and no
capabilities even when crewboard runs as root. Without bubblewrap it is an
ordinary child in its own process group; the runner is still closed to it
(non-dumpable, capabilities dropped with ``setpriv`` when running as root), but
it can read whatever the server's user can.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from crewboard.runner.spec import Limits

# Read-only system folders visible inside the sandbox.
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/opt")
# Only these pass from the runner's environment into a tool's.
_ENV_PASSTHROUGH = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


def bwrap_path() -> str | None:
    return shutil.which("bwrap", path=SAFE_PATH + ":/usr/sbin:/sbin")


def tool_env(workspace: Path, *, sandboxed: bool) -> dict[str, str]:
    """A tool's whole environment, built from nothing: no keys, no
    ``CREWBOARD_*``, no ``NOTIFY_SOCKET``."""
    env = {k: os.environ[k] for k in _ENV_PASSTHROUGH if k in os.environ}
    env.update(
        PATH=SAFE_PATH,
        HOME=str(workspace),
        TMPDIR="/tmp" if sandboxed else str(workspace),
        TERM="dumb",
        PWD=str(workspace),
    )
    env.setdefault("LANG", "C.UTF-8")
    return env


def ulimit_prelude(limits: Limits) -> str:
    """Shell lines setting hard limits (a command cannot raise them again):
    CPU time, file size, address space, open files, no core dumps."""
    cpu_s = int(limits.tool_timeout_s) + 5
    return f"ulimit -t {cpu_s}; ulimit -f 2097152; ulimit -v 8388608; ulimit -n 1024; ulimit -c 0\n"


def watchdog_prelude(runner_pid: int) -> str:
    """Outside bubblewrap, a command lives in a process group of its own, which
    a launcher stopping the runner does not reach. This shell line starts a
    watcher in that group that kills the whole group once the runner is gone
    (even killed with SIGKILL), so no tool process outlives its run. Inside
    bubblewrap ``--die-with-parent`` and the PID namespace do this."""
    return (
        f"(while kill -0 {runner_pid} 2>/dev/null; do sleep 1; done; kill -9 0) "
        "</dev/null >/dev/null 2>&1 &\n"
    )


def sandbox_argv(workspace: Path, hidden: list[Path]) -> list[str]:
    """The bwrap command line that runs a command with only ``workspace``
    writable; ``hidden`` folders (the data home's) get an empty tmpfs over
    them in case they lie below a visible system folder."""
    bwrap = bwrap_path()
    if bwrap is None:
        return []
    argv = [bwrap, "--die-with-parent", "--new-session", "--unshare-all", "--cap-drop", "ALL"]
    for folder in _SYSTEM_DIRS:
        if os.path.isdir(folder):
            argv += ["--ro-bind", folder, folder]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in hidden:
        if any(str(path).startswith(d + "/") for d in _SYSTEM_DIRS) and path.is_dir():
            argv += ["--tmpfs", str(path)]
    ws = str(workspace.resolve())
    argv += ["--bind", ws, ws, "--chdir", ws]
    return argv


def unprivileged_argv() -> list[str]:
    """Without bubblewrap, root drops every capability so that it cannot read
    the non-dumpable runner's memory or environment."""
    setpriv = shutil.which("setpriv", path=SAFE_PATH + ":/usr/sbin:/sbin")
    if os.geteuid() != 0 or setpriv is None:
        return []
    return [setpriv, "--bounding-set", "-all", "--inh-caps", "-all", "--no-new-privs"]
