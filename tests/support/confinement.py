"""Support for tests of the file tools' confinement: running a test on both
ways a path is resolved (``openat2``, and the walk by fds that stands in for
it), and a child process that swaps a folder with a symlink in a tight loop
(``renameat2`` with ``RENAME_EXCHANGE``), as a hostile shell call would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from crewboard.runner.tools import confined
from tests.support import need

RESOLUTIONS = ["openat2", "walk"]

SECRET = "SIGNING-KEY-0a1b2c"

# Ways up and out of the workspace a file tool must refuse.
ESCAPES = [
    "..",
    "../",
    "../secret_key",
    "./../secret_key",
    "notes/../../secret_key",
    "notes/./../..",
    "/etc/passwd",
    "//etc/passwd",
    "/proc/self/environ",
    "~/secret_key",
    "~root/.bashrc",
]
# Encoded and look-alike forms: each is a plain name, taken literally, never decoded.
ENCODED = [
    "%2e%2e/secret_key",
    "%2e%2e%2fsecret_key",
    "..%2fsecret_key",
    "%252e%252e%252fsecret_key",
    ".%2e/secret_key",
    "..\\secret_key",
    "..;/secret_key",
    "\uff0e\uff0e/secret_key",
    "\u2024\u2024/secret_key",
    "%00secret_key",
    "..%00/secret_key",
]
# A NUL anywhere, or text that is no file name: a clear tool error, not a crash.
UNNAMEABLE = [("\0", "NUL"), ("a\0b", "NUL"), ("notes/\0/x", "NUL"), ("\ud800", "not valid text")]


def use_resolution(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the file tools resolve paths by ``name``: openat2 (needs a kernel
    that has it) or the component-by-component walk."""
    if name == "openat2":
        need(confined.kernel_has_openat2(), "the kernel (or its seccomp filter) refuses openat2")
    else:
        monkeypatch.setattr(confined, "kernel_has_openat2", lambda: False)


def hostile_workspace(tmp_path: Path, workspace: Path) -> None:
    """Beside ``workspace``, the secrets a tool must not reach; inside it, the
    traps a shell could plant: symlinks out (at a last and a middle component,
    a folder that is ``/``), a hard link to a secret, a FIFO and a socket."""
    (tmp_path / "secret_key").write_text(SECRET)
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "board.db").write_text(SECRET)
    (workspace / "notes").mkdir(exist_ok=True)
    os.symlink(tmp_path / "secret_key", workspace / "key")
    os.symlink(tmp_path / "private", workspace / "priv")
    os.symlink("/", workspace / "rootfs")
    os.symlink("notes", workspace / "alias")
    os.link(tmp_path / "secret_key", workspace / "hard")
    os.mkfifo(workspace / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(workspace / "sock"))


def outside(tmp_path: Path, workspace: Path) -> dict[str, bytes]:
    """Every file under ``tmp_path`` but in ``workspace``, with its content."""
    return {
        str(p): p.read_bytes()
        for p in sorted(tmp_path.rglob("*"))
        if p.is_file() and not p.is_symlink() and workspace not in p.parents
    }


@pytest.fixture(params=RESOLUTIONS)
def resolution(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once per way of resolving paths; import it into a test
    module and name it in ``usefixtures``."""
    use_resolution(request.param, monkeypatch)
    return str(request.param)


# The child: swaps ``a`` and ``b`` for ever, counting; prints the count when
# terminated. RENAME_EXCHANGE swaps the two entries atomically, so at every
# instant one name is the real folder and the other the symlink.
_FLIPPER = r"""
import ctypes, os, platform, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = (os.fsencode(p) for p in sys.argv[1:3])
AT_FDCWD, RENAME_EXCHANGE = -100, 2
if hasattr(libc, "renameat2"):
    def swap():
        return libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
else:
    number = {"x86_64": 316, "aarch64": 276}[platform.machine()]
    def swap():
        return libc.syscall(number, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
count = 0
def stop(*_):
    print(count, flush=True)
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
if swap() != 0:
    print("renameat2 failed", ctypes.get_errno(), flush=True)
    sys.exit(1)
count = 1
print("flipping", flush=True)
while True:
    swap()
    count += 1
"""


class Flipper:
    def __init__(self) -> None:
        self.flips = 0


@contextmanager
def flipping(a: Path, b: Path) -> Iterator[Flipper]:
    """Swap ``a`` and ``b`` in a tight loop (a child process, so it runs truly
    in parallel with the test) for the block; ``.flips`` says how many times."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _FLIPPER, str(a), str(b)],
        stdout=subprocess.PIPE,
        text=True,
    )
    flipper = Flipper()
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        if first != "flipping":
            need(False, f"renameat2(RENAME_EXCHANGE) is not available here: {first}")
        yield flipper
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        flipper.flips = int(out.strip() or 0) if proc.returncode == 0 else 0
    # Leave the tree as it was found: the real folder under ``a``.
    if a.is_symlink():
        os.rename(a, a.with_name(".swap"))
        os.rename(b, a)
        os.rename(a.with_name(".swap"), b)
