"""The file tools' view of a run's workspace: a path the model wrote, parsed
into plain names, and the kernel's refusals turned into clear tool errors.

A path must be relative and must not contain ``..``; it is taken literally
(``%2e%2e`` is a file of that name, never decoded). Opening it is
:mod:`.confined`'s work: no symlink is followed at any component, so no path,
however the workspace changes meanwhile, leads outside it.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import IO, Any

from crewboard.runner.tools.base import ToolError


@dataclass(frozen=True)
class ModelPath:
    """A path as the model wrote it, and the names it is made of."""

    text: str
    parts: tuple[str, ...]

    @property
    def shown(self) -> str:
        """How the path is named back to the model: relative to the workspace."""
        return "/".join(self.parts) or "."


def parse(text: str) -> ModelPath:
    """The names of a workspace path, or a refusal saying what is wrong with it."""
    if not text:
        raise ToolError("the path is empty")
    if "\0" in text:
        raise ToolError(f"{text!r}: a path cannot contain a NUL byte")
    if text.startswith(("/", "~")):
        raise ToolError(f"{text!r}: use a path relative to the workspace, not an absolute one")
    parts = tuple(name for name in text.split("/") if name not in ("", "."))
    if ".." in parts:
        raise ToolError(f"{text!r}: '..' is not allowed; paths stay inside the workspace")
    try:
        os.fsencode(text)
    except UnicodeEncodeError as exc:
        raise ToolError(f"{text!r}: the path is not valid text") from exc
    return ModelPath(text, parts)


def refusal(path: ModelPath, exc: OSError, doing: str = "open") -> ToolError:
    """The tool error for an OSError met while opening or writing ``path``."""
    name = repr(path.text)
    match exc.errno:
        case errno.ELOOP:
            return ToolError(
                f"{name} goes through a symlink; file tools follow no symlinks, "
                "so no path leads outside the workspace"
            )
        case errno.EXDEV:
            return ToolError(f"{name} leads outside the workspace")
        case errno.ENOENT:
            return ToolError(f"{name} does not exist")
        case errno.ENOTDIR:
            return ToolError(f"{name}: a part of it is not a folder")
        case errno.EISDIR:
            return ToolError(f"{name} is a directory")
        case errno.ENXIO:
            return ToolError(f"{name} is not a regular file")
        case _:
            return ToolError(f"cannot {doing} {name}: {exc.strerror}")


def regular_file(fd: int, path: ModelPath, mode: str) -> tuple[IO[Any], os.stat_result]:
    """The open file ``fd`` as a file object, if it is a regular file with
    one link; otherwise ``fd`` is closed and the call refused.

    One link only: another hard link to the same file could lie outside the
    workspace (a link only a shell without the sandbox could make, since the
    sandbox's mounts stop ``link`` at the workspace), so its content is not the
    workspace's to read or extend."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ToolError(f"{path.text!r} is not a regular file")
        if st.st_nlink > 1:
            raise ToolError(
                f"{path.text!r} has {st.st_nlink} hard links; file tools read and append "
                "only to files with one, as another could lie outside the workspace"
            )
        return os.fdopen(fd, mode), st
    except BaseException:
        os.close(fd)
        raise
