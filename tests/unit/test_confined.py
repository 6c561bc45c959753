"""Opening beneath a folder without following symlinks (runner.tools.confined),
on both ways it resolves a path: openat2, and the walk by fds that stands in
for it where the kernel has no openat2 or a seccomp filter refuses it."""

from __future__ import annotations

import errno
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crewboard.runner.tools import confined, list_files, read_file, write_file
from crewboard.runner.tools.base import ToolError
from tests.support import need
from tests.support.confinement import (
    RESOLUTIONS,
    flipping,
    resolution,  # noqa: F401  (a fixture)
)
from tests.support.runner import tool_context


@pytest.fixture(params=RESOLUTIONS)
def use_openat2(request: pytest.FixtureRequest) -> bool:
    if request.param == "openat2":
        need(confined.kernel_has_openat2(), "the kernel (or its seccomp filter) refuses openat2")
    return bool(request.param == "openat2")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A workspace with a folder, a file, and a secret beside it."""
    ws = tmp_path / "ws"
    (ws / "notes" / "deep").mkdir(parents=True)
    (ws / "notes" / "deep" / "a.md").write_text("inside")
    (tmp_path / "secret_key").write_text("SIGNING-KEY")
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "a.md").write_text("OUTSIDE")
    return ws


@pytest.fixture
def root(tree: Path) -> Iterator[int]:
    with confined.opened_folder(tree) as fd:
        yield fd


def read(fd: int) -> str:
    with os.fdopen(fd, "rb") as f:
        return f.read().decode()


def errno_of(call: object, *args: object, **kwargs: object) -> int:
    with pytest.raises(OSError) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    return info.value.errno or 0


def test_openat2_is_there_on_this_kernel() -> None:
    # Linux 5.6 on has it; CI runs on such kernels, so the fast path is tested.
    need(confined.kernel_has_openat2(), "the kernel (or its seccomp filter) refuses openat2")


def test_opens_a_nested_file_and_the_folder_itself(root: int, use_openat2: bool) -> None:
    fd = confined.open_beneath(
        root, ("notes", "deep", "a.md"), os.O_RDONLY, use_openat2=use_openat2
    )
    assert read(fd) == "inside"
    fd = confined.open_beneath(root, (), confined.FOLDER, use_openat2=use_openat2)
    try:
        assert sorted(os.listdir(fd)) == ["notes"]
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("link", "target", "parts"),
    [
        ("key", "../secret_key", ("key",)),  # the last component
        ("up", "..", ("up", "secret_key")),  # a middle component
        ("priv", "../private", ("priv", "a.md")),
        ("rootfs", "/", ("rootfs", "etc", "passwd")),  # a workspace folder that is /
        ("notes/deep/back", "../../..", ("notes", "deep", "back", "secret_key")),
        ("same", "notes", ("same", "deep", "a.md")),  # even one that stays inside
        ("gone", "/nonexistent", ("gone",)),
    ],
)
def test_a_symlink_at_any_component_is_refused(
    tree: Path, root: int, use_openat2: bool, link: str, target: str, parts: tuple[str, ...]
) -> None:
    os.symlink(target, tree / link)
    for flags in (os.O_RDONLY, confined.FOLDER, os.O_WRONLY | os.O_CREAT):
        code = errno_of(confined.open_beneath, root, parts, flags, use_openat2=use_openat2)
        assert code == errno.ELOOP, (parts, flags, os.strerror(code))


@pytest.mark.parametrize(
    "parts", [("..",), ("notes", "..", ".."), ("",), (".",), ("/etc/passwd",), ("a\0b",)]
)
def test_names_that_are_not_plain_are_refused_before_any_open(
    root: int, use_openat2: bool, parts: tuple[str, ...]
) -> None:
    code = errno_of(confined.open_beneath, root, parts, os.O_RDONLY, use_openat2=use_openat2)
    assert code == errno.EXDEV


def test_the_kernel_itself_keeps_openat2_beneath_the_folder(root: int) -> None:
    # Defence in depth: were a `..` or an absolute path ever to get past the
    # checks above, openat2 would still refuse it.
    need(confined.kernel_has_openat2(), "the kernel (or its seccomp filter) refuses openat2")
    for path in ("../secret_key", "notes/../../secret_key", "/etc/passwd"):
        assert errno_of(confined.openat2, root, path, os.O_RDONLY) == errno.EXDEV, path
    assert errno_of(confined.openat2, root, "/proc/self/root/etc/passwd", os.O_RDONLY) in (
        errno.EXDEV,
        errno.ELOOP,
    )


@pytest.mark.parametrize("code", [errno.ENOSYS, errno.EPERM])
def test_an_openat2_refused_by_seccomp_falls_back_to_the_walk(
    tree: Path, root: int, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def refused(*args: object) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(confined, "openat2", refused)
    fd = confined.open_beneath(root, ("notes", "deep", "a.md"), os.O_RDONLY, use_openat2=True)
    assert read(fd) == "inside"
    os.symlink("..", tree / "up")
    code = errno_of(
        confined.open_beneath, root, ("up", "secret_key"), os.O_RDONLY, use_openat2=True
    )
    assert code == errno.ELOOP


def test_a_fifo_opens_without_waiting_for_a_writer(
    tree: Path, root: int, use_openat2: bool
) -> None:
    os.mkfifo(tree / "pipe")
    done = threading.Event()

    def open_it() -> None:
        fd = confined.open_beneath(
            root, ("pipe",), os.O_RDONLY | os.O_NONBLOCK, use_openat2=use_openat2
        )
        assert stat.S_ISFIFO(os.fstat(fd).st_mode)
        os.close(fd)
        done.set()

    thread = threading.Thread(target=open_it, daemon=True)
    thread.start()
    assert done.wait(5), "opening a FIFO hung"


def test_make_folders_creates_what_is_missing_and_never_follows_a_link(
    tmp_path: Path, tree: Path, root: int, use_openat2: bool
) -> None:
    fd = confined.make_folders(root, ("a", "b", "c"), use_openat2=use_openat2)
    os.close(fd)
    assert (tree / "a" / "b" / "c").is_dir()
    os.symlink(tmp_path / "private", tree / "a" / "out")
    code = errno_of(confined.make_folders, root, ("a", "out", "new"), use_openat2=use_openat2)
    assert code == errno.ELOOP
    assert sorted(p.name for p in (tmp_path / "private").iterdir()) == ["a.md"]


def test_replace_file_writes_atomically_and_keeps_the_mode(tree: Path, root: int) -> None:
    target = tree / "run.sh"
    target.write_text("old")
    target.chmod(0o750)
    confined.replace_file(root, "run.sh", b"new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    confined.replace_file(root, "fresh.txt", b"x", mode=0o644)
    assert stat.S_IMODE((tree / "fresh.txt").stat().st_mode) == 0o644
    assert sorted(p.name for p in tree.iterdir()) == ["fresh.txt", "notes", "run.sh"]


def test_replace_file_never_writes_through_a_link(tmp_path: Path, tree: Path, root: int) -> None:
    secret = tmp_path / "secret_key"
    os.symlink(secret, tree / "key")
    assert errno_of(confined.replace_file, root, "key", b"pwned") == errno.ELOOP
    # A hard link (possible only for a shell without the sandbox) is replaced
    # by a new file: the file outside keeps its content.
    os.link(secret, tree / "hard")
    confined.replace_file(root, "hard", b"pwned")
    assert secret.read_text() == "SIGNING-KEY"
    assert (tree / "hard").read_text() == "pwned"
    os.mkfifo(tree / "pipe")
    assert errno_of(confined.replace_file, root, "pipe", b"x") == errno.ENXIO
    assert errno_of(confined.replace_file, root, "notes", b"x") == errno.EISDIR
    assert errno_of(confined.replace_file, root, "..", b"x") == errno.EXDEV
    assert not [p for p in tree.iterdir() if p.name.startswith(".saving-")]


def test_the_folder_itself_must_not_be_a_symlink(tmp_path: Path, tree: Path) -> None:
    os.symlink(tree, tmp_path / "link")
    assert errno_of(confined.open_folder, tmp_path / "link") in (errno.ELOOP, errno.ENOTDIR)


# --- the race ------------------------------------------------------------------

CALLS_PER_THREAD = 300
THREADS = 4


@pytest.mark.usefixtures("resolution")
def test_a_folder_flipped_with_a_symlink_never_leads_a_tool_outside(tmp_path: Path) -> None:
    """A hostile shell swaps a workspace folder with a symlink to a folder
    outside (renameat2 RENAME_EXCHANGE in a tight loop) while 1,200 file-tool
    calls go through it from parallel threads, as a run's parallel calls do.
    Nothing outside is read, listed or written; a plain path-based open in
    the same race is fooled, which shows the race is real."""
    secret = "SECRET-" + secrets.token_hex(8)
    ctx = tool_context(tmp_path)
    outside = tmp_path / "outside"
    for folder in (outside, ctx.workspace / "d"):
        content = secret if folder == outside else "inside"
        (folder / "sub").mkdir(parents=True)
        (folder / "canary").mkdir()
        (folder / "secret.txt").write_text(content)
        (folder / "sub" / "secret.txt").write_text(content)
    (outside / "outside-only.txt").write_text(secret)
    before = snapshot(outside)
    os.symlink(outside, ctx.workspace / "l")

    calls: list[tuple[Any, dict[str, Any]]] = [
        (read_file.TOOL, {"path": "d/secret.txt"}),
        (read_file.TOOL, {"path": "d/sub/secret.txt"}),
        (write_file.TOOL, {"path": "d/canary/planted.txt", "content": "pwned"}),
        (write_file.TOOL, {"path": "d/sub/new.txt", "content": "pwned", "append": True}),
        (write_file.TOOL, {"path": "d/new.txt", "content": "pwned"}),
        (list_files.TOOL, {"path": "d"}),
        (list_files.TOOL, {"path": "d/sub"}),
        (list_files.TOOL, {}),
    ]
    results: list[str] = []
    refusals: list[str] = []
    crashes: list[str] = []
    fooled = 0
    lock = threading.Lock()

    def attack(offset: int) -> None:
        nonlocal fooled
        mine: list[str] = []
        refused: list[str] = []
        crashed: list[str] = []
        hits = 0
        for i in range(CALLS_PER_THREAD):
            tool, args = calls[(i + offset) % len(calls)]
            try:
                mine.append(tool.run(args, ctx))
            except ToolError as exc:
                refused.append(str(exc))
            except Exception as exc:  # the run would show it as a tool error too
                crashed.append(f"{type(exc).__name__}: {exc}")
            # The control: what a path-based open sees in the same race.
            try:
                hits += secret in (ctx.workspace / "d" / "secret.txt").read_text()
            except OSError:
                pass
        with lock:
            results.extend(mine)
            refusals.extend(refused)
            crashes.extend(crashed)
            fooled += hits

    started = time.monotonic()
    with flipping(ctx.workspace / "d", ctx.workspace / "l") as flipper:
        threads = [threading.Thread(target=attack, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert time.monotonic() - started < 10

    assert len(results) + len(refusals) + len(crashes) == THREADS * CALLS_PER_THREAD
    assert not [r for r in results + refusals + crashes if secret in r or "outside-only" in r]
    assert snapshot(outside) == before, "something was written outside the workspace"
    assert list((outside / "canary").iterdir()) == []
    # The race really ran: the folder flipped under the calls, some went
    # through and some met the symlink, and a plain open was fooled.
    assert flipper.flips > 1000, flipper.flips
    assert results and any("symlink" in r for r in refusals), refusals[:5]
    assert fooled > 0
    # Every refusal is a clear tool error, never a crash.
    assert crashes == [], crashes[:5]


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with a file's content ("/" for a folder)."""
    return {
        str(p.relative_to(folder)): "/" if p.is_dir() else p.read_text()
        for p in sorted(folder.rglob("*"))
    }
