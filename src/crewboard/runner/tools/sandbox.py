"""Where a shell command runs: inside bubblewrap (``bwrap``), with a scrubbed
environment and hard resource limits.

Inside the sandbox a command sees only:

- ``/usr`` and the ``/bin``, ``/sbin``, ``/lib*`` beside it, read-only;
- a few named files of ``/etc`` that programs need to start, resolve users and
  check TLS certificates (:data:`ETC_FILES`; ``resolv.conf`` and ``hosts``
  only with the network on), never the whole of ``/etc``, where operators
  keep environment files with keys;
- its run's workspace, read-write, at its own path (the working directory);
- a private ``/tmp`` and ``/dev/shm`` of bounded size, a minimal ``/dev``, and
  a fresh ``/proc`` of its own PID namespace, where no process but its own is
  listed (not the runner, the web or the supervisor);
- no network (an empty network namespace: only its own loopback) unless
  ``limits.shell_network``; no capabilities, even when crewboard runs as root;
  no new user namespaces; its own session, killed with the runner.

Not the data home (board, logs, secret key, other runs' files), nor the
host's ``/tmp``, ``/opt``, ``/home``, ``/var`` or ``/run`` (an MCP server
also sees, read-only, the folders its table names in ``read_only``).

Without bubblewrap (only when the operator allowed an unsandboxed shell) a
command is an ordinary child in its own process group: the runner is still
closed to it (non-dumpable; capabilities dropped with ``setpriv`` when running
as root), but it can read and write whatever the server's user can.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from crewboard.runner.spec import Limits
from crewboard.runner.tools.base import ToolError

# System folders bound read-only; a symlink among them (merged /usr) is
# recreated as the same symlink.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The files of /etc a command may need: users and groups by name, the dynamic
# linker's cache, TLS roots, the time zone, and alternatives (awk, editor...).
ETC_FILES = (
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl/certs",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/localtime",
    "/etc/alternatives",
)
# Name resolution, only when the command has a network to resolve names on.
NETWORK_ETC_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/host.conf", "/etc/gai.conf")
# Only these pass from the runner's environment into a command's.
_ENV_PASSTHROUGH = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_TOOL_DIRS = SAFE_PATH + ":/usr/sbin:/sbin"
# The size of the private /dev/shm (the private /tmp gets shell_file_bytes).
_SHM_BYTES = 64 << 20
UNAVAILABLE = "its sandbox (bubblewrap) is not available: "


def find_tool(name: str) -> str | None:
    return shutil.which(name, path=_TOOL_DIRS)


def tool_env(workspace: Path, *, sandboxed: bool) -> dict[str, str]:
    """A command's whole environment, built from nothing: no keys, no
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


def limits_argv(limits: Limits, *, sandboxed: bool) -> list[str]:
    """``prlimit`` setting hard limits (a command cannot raise them again) on
    CPU time, address space, processes, file size and open files, and no core
    dumps. The process count is set only inside the sandbox: there it counts
    the sandbox's own processes (a user namespace of its own), outside it every
    process of the server's user. Empty if ``prlimit`` is missing."""
    prlimit = find_tool("prlimit")
    if prlimit is None:
        return []
    argv = [
        prlimit,
        f"--cpu={limits.shell_cpu_s}",
        f"--as={limits.shell_memory_bytes}",
        f"--fsize={limits.shell_file_bytes}",
        f"--nofile={limits.shell_open_files}",
        "--core=0",
    ]
    if sandboxed:
        argv.append(f"--nproc={limits.shell_processes}")
    return [*argv, "--"]


def find_bwrap(limits: Limits) -> str:
    """The bubblewrap binary to run a tool process in; ToolError saying why
    there is none."""
    if limits.shell_unavailable:
        raise ToolError(UNAVAILABLE + limits.shell_unavailable)
    bwrap = limits.shell_bwrap or find_tool("bwrap")
    if bwrap is None or not os.access(bwrap, os.X_OK):
        raise ToolError(UNAVAILABLE + f"{bwrap or 'bwrap'} is not installed")
    return bwrap


def sandbox_argv(
    bwrap: str,
    workspace: Path,
    limits: Limits,
    env: dict[str, str],
    *,
    network: bool | None = None,
    read_only: tuple[str, ...] = (),
    chdir: Path | None = None,
) -> list[str]:
    """The bwrap command line that runs a command with only ``workspace``
    writable (see the module docstring for all it sees). An MCP server
    (:mod:`crewboard.runner.mcp`) runs in the same sandbox with its own
    ``network`` setting, the folders its program lives in shown
    ``read_only``, and its working directory ``chdir`` inside the workspace."""
    if network is None:
        network = limits.shell_network
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]
    if network:
        argv.append("--share-net")
    for folder in SYSTEM_DIRS:
        if os.path.islink(folder):
            argv += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            argv += ["--ro-bind", folder, folder]
    etc = ETC_FILES + (NETWORK_ETC_FILES if network else ())
    for path in etc:
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--size", str(_SHM_BYTES), "--tmpfs", "/dev/shm"]
    argv += ["--size", str(limits.shell_file_bytes), "--tmpfs", "/tmp"]
    # A data home below a system folder (/usr/local/...) is covered over.
    ws = workspace.resolve()
    home = ws.parent.parent
    if any(str(home).startswith(d + "/") for d in SYSTEM_DIRS) and home.is_dir():
        argv += ["--tmpfs", str(home)]
    for folder in read_only:
        if os.path.isdir(folder):
            argv += ["--ro-bind", folder, folder]
    argv += ["--bind", str(ws), str(ws), "--chdir", str(chdir or ws)]
    argv += ["--remount-ro", "/", "--clearenv"]
    for name, value in env.items():
        argv += ["--setenv", name, value]
    return [*argv, "--"]


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


def unprivileged_argv() -> list[str]:
    """Without bubblewrap, root drops every capability so that it cannot read
    the non-dumpable runner's or server's memory and environment."""
    setpriv = find_tool("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        return []
    return [setpriv, "--bounding-set", "-all", "--inh-caps", "-all", "--no-new-privs"]
