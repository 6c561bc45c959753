"""Opening files beneath a folder without following a symlink anywhere on the
way: the only way the file tools (``read_file``, ``write_file``, ``list_files``,
``save_artifact``) reach the disk.

Why it is done this way. The file tools run in the runner, as the server's
user and outside the shell's sandbox, while a shell call of the same step may
rewrite the workspace under them: it can swap a folder for a symlink to ``/``
(``renameat2`` with ``RENAME_EXCHANGE``) between a check of a path and its
open. So a path is never checked and then opened. It is resolved once, from an
fd of the folder, refusing every symlink on the way; everything after that
(reading, writing, listing, stat) goes through the fds it yields, and no path
string is ever resolved again.

- Where the kernel has ``openat2(2)`` (Linux 5.6 on), one call resolves the
  whole path with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
  RESOLVE_NO_MAGICLINKS``: the kernel itself guarantees, atomically, that the
  file lies beneath the folder, whatever the path holds (``..``, an absolute
  path, a symlink, a ``/proc`` magic link at any component).
- Without it (an older kernel, or a seccomp filter answering ENOSYS or EPERM)
  the path is walked one component at a time from the folder's fd: each
  folder opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to the one before,
  the last component with ``O_NOFOLLOW``. Each step names a single entry of a
  folder already held open, so a swap can only change what that entry is, and
  a symlink there is refused by the open itself. A component is never ``..``
  (refused here as well as by the tools), so the walk cannot climb out.

Running the file tools inside the shell's sandbox instead was not chosen: the
sandbox needs bubblewrap and the shell may be off or unsandboxed, and the file
tools must stay confined then too; a sandboxed process per call would also
cost far more than an open.

A write never goes through an existing entry: the data goes to a new file
that is renamed over the name, so a symlink or a hard link planted there
leads nowhere. Special files (FIFOs, devices, sockets) are opened
non-blocking, so one planted in the workspace cannot hang a tool, and the
tools refuse them by ``fstat``.

Errors are :class:`OSError` with the kernel's errno; a symlink on the way is
``ELOOP`` on both paths, a component that would leave the folder ``EXDEV``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

SYS_OPENAT2 = 437  # the same number on every Linux architecture (added after the unification)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS

# Added to every open: no symlink at the end, no fd leaked into a tool
# subprocess started by a parallel shell call, no controlling terminal taken.
ALWAYS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
FOLDER = os.O_RDONLY | os.O_DIRECTORY

# An openat2 refused by a seccomp filter (or absent) means: walk instead.
_NO_OPENAT2 = (errno.ENOSYS, errno.EPERM)


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


@functools.cache
def _syscall() -> Callable[..., int] | None:
    if sys.platform != "linux":
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_long
    return function


def openat2(dir_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """``openat2(dir_fd, path, {flags, mode, RESOLVE})``: an fd, or OSError."""
    syscall = _syscall()
    if syscall is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS), path)
    how = _OpenHow(flags, mode if flags & os.O_CREAT else 0, RESOLVE)
    encoded = os.fsencode(path)
    for _ in range(3):
        fd = int(
            syscall(
                ctypes.c_long(SYS_OPENAT2),
                ctypes.c_int(dir_fd),
                ctypes.c_char_p(encoded),
                ctypes.byref(how),
                ctypes.c_size_t(ctypes.sizeof(how)),
            )
        )
        if fd >= 0:
            return fd
        code = ctypes.get_errno()
        # EAGAIN: the kernel saw a rename during the lookup and would rather
        # start again than vouch for the result.
        if code not in (errno.EAGAIN, errno.EINTR):
            break
    raise OSError(code, os.strerror(code), path)


@functools.cache
def kernel_has_openat2() -> bool:
    """Whether ``openat2`` works here (the kernel has it, no filter refuses it)."""
    try:
        root = os.open("/", FOLDER | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.close(openat2(root, ".", FOLDER | ALWAYS))
    except OSError:
        return False
    finally:
        os.close(root)
    return True


def check_names(parts: Sequence[str]) -> None:
    """Refuse a component that is not one plain name of the folder it is in."""
    for name in parts:
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            raise OSError(errno.EXDEV, "not a plain name beneath the folder", name)


def open_beneath(
    dir_fd: int,
    parts: Sequence[str],
    flags: int,
    mode: int = 0o644,
    *,
    use_openat2: bool | None = None,
) -> int:
    """An fd for the entry ``parts`` names beneath the folder ``dir_fd``
    (``()`` is the folder itself), opened with ``flags`` and without
    following a symlink at any component. ``use_openat2``: None picks
    ``openat2`` when the kernel has it, False forces the walk."""
    check_names(parts)
    flags |= ALWAYS
    if use_openat2 is None:
        use_openat2 = kernel_has_openat2()
    if use_openat2:
        try:
            return openat2(dir_fd, "/".join(parts) or ".", flags, mode)
        except NotADirectoryError:
            # O_NOFOLLOW | O_DIRECTORY on a symlink says ENOTDIR; say ELOOP,
            # as for a symlink anywhere else, so a refusal names its cause.
            if parts and _ends_in_symlink(dir_fd, parts):
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), parts[-1]) from None
            raise
        except OSError as exc:
            if exc.errno not in _NO_OPENAT2:
                raise
    return _walk(dir_fd, parts, flags, mode)


def _ends_in_symlink(dir_fd: int, parts: Sequence[str]) -> bool:
    try:
        folder = open_beneath(dir_fd, parts[:-1], FOLDER)
    except OSError:
        return False
    try:
        return is_symlink(folder, parts[-1])
    finally:
        os.close(folder)


def _walk(dir_fd: int, parts: Sequence[str], flags: int, mode: int) -> int:
    if not parts:
        return os.open(".", flags, mode, dir_fd=dir_fd)
    fd = dir_fd
    try:
        for name in parts[:-1]:
            step = _open_one(fd, name, FOLDER | ALWAYS, 0)
            if fd != dir_fd:
                os.close(fd)
            fd = step
        return _open_one(fd, parts[-1], flags, mode)
    finally:
        if fd != dir_fd:
            os.close(fd)


def _open_one(dir_fd: int, name: str, flags: int, mode: int) -> int:
    try:
        return os.open(name, flags, mode, dir_fd=dir_fd)
    except NotADirectoryError:
        # A symlink met with O_NOFOLLOW | O_DIRECTORY: ELOOP, as above.
        if is_symlink(dir_fd, name):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name) from None
        raise


def is_symlink(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_folder(folder: Path, *, create: bool = False) -> int:
    """An fd for ``folder``, a path the server chose (a run's workspace or
    artifact folder), created first when ``create``. Its last component must
    not be a symlink."""
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return os.open(folder, FOLDER | ALWAYS)


@contextlib.contextmanager
def opened_folder(folder: Path, *, create: bool = False) -> Iterator[int]:
    fd = open_folder(folder, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def make_folders(dir_fd: int, parts: Sequence[str], *, use_openat2: bool | None = None) -> int:
    """An fd for the folder ``parts`` beneath ``dir_fd``, making the missing
    ones one component at a time (``mkdir`` relative to the folder above, then
    an open of that one name without following a symlink)."""
    check_names(parts)
    fd = open_beneath(dir_fd, (), FOLDER, use_openat2=use_openat2)
    try:
        for name in parts:
            try:
                step = open_beneath(fd, (name,), FOLDER, use_openat2=use_openat2)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=fd)
                step = open_beneath(fd, (name,), FOLDER, use_openat2=use_openat2)
            os.close(fd)
            fd = step
    except BaseException:
        os.close(fd)
        raise
    return fd


def replace_file(dir_fd: int, name: str, data: bytes, mode: int | None = None) -> None:
    """Make ``name`` in the folder ``dir_fd`` a regular file holding ``data``,
    atomically: a new file is written under a temporary name and renamed over
    the old entry, so a reader never sees half a file and nothing is written
    through a link planted at ``name``. ``mode``: None keeps the permissions
    of the regular file replaced (0o644 for a new one).

    An existing symlink, folder or special file at ``name`` is refused
    (ELOOP, EISDIR, ENXIO). That check serves clear errors only; should the
    entry change after it, the rename still just replaces it.
    """
    check_names((name,))
    try:
        old: os.stat_result | None = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        old = None
    if old is not None and not stat.S_ISREG(old.st_mode):
        code = (
            errno.ELOOP
            if stat.S_ISLNK(old.st_mode)
            else errno.EISDIR
            if stat.S_ISDIR(old.st_mode)
            else errno.ENXIO
        )
        raise OSError(code, os.strerror(code), name)
    if mode is None and old is not None:
        mode = stat.S_IMODE(old.st_mode) & 0o777
    temp = f".saving-{secrets.token_hex(8)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | ALWAYS, 0o644, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if mode is not None:
                os.fchmod(f.fileno(), mode)
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
