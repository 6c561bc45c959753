"""Tool ``list_files``: list a folder of the run's workspace, recursively.

The listing reads folders through fds (``scandir`` of an fd, ``stat`` and
``readlink`` relative to it) and descends one name at a time without
following symlinks, so a folder swapped for a symlink meanwhile is skipped,
never listed."""

from __future__ import annotations

import os
import stat
from typing import Any

from crewboard.runner.tools import confined
from crewboard.runner.tools.base import Tool, ToolContext, ToolError, arg_str, params
from crewboard.runner.tools.workspace import parse, refusal

MAX_ENTRIES = 500


class _Full(Exception):
    """The listing reached MAX_ENTRIES."""


def list_files(args: dict[str, Any], ctx: ToolContext) -> str:
    path = parse(arg_str(args, "path", "."))
    try:
        with confined.opened_folder(ctx.workspace, create=True) as root:
            fd = confined.open_beneath(root, path.parts, confined.FOLDER)
    except NotADirectoryError as exc:
        raise ToolError(f"{path.text!r} is not a folder") from exc
    except OSError as exc:
        raise refusal(path, exc, "list") from exc
    lines: list[str] = []
    try:
        _list(fd, path.parts, lines)
    except _Full:
        lines.append(f"[listing cut at {MAX_ENTRIES} entries]")
    finally:
        os.close(fd)
    return "\n".join(lines) if lines else f"{path.shown} is empty"


def _list(fd: int, prefix: tuple[str, ...], lines: list[str]) -> None:
    """List the folder ``fd`` (named ``prefix``): its folders, then the rest,
    then what is inside each folder, as ``os.walk`` goes."""
    with os.scandir(fd) as it:
        entries = sorted(it, key=lambda entry: entry.name)
    folders: list[str] = []
    others: list[str] = []
    for entry in entries:
        label = "/".join((*prefix, entry.name))
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # gone meanwhile
        if stat.S_ISDIR(st.st_mode):
            folders.append(entry.name)
            _add(lines, f"{label}/")
        elif stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(entry.name, dir_fd=fd)
            except OSError:
                continue
            others.append(f"{label} -> (symlink, {target})")
        elif stat.S_ISREG(st.st_mode):
            others.append(f"{label} ({st.st_size} bytes)")
        else:
            others.append(f"{label} (special file)")
    for line in others:
        _add(lines, line)
    for name in folders:
        try:
            sub = confined.open_beneath(fd, (name,), confined.FOLDER)
        except OSError:
            continue  # replaced (by a symlink, say) since it was listed: not followed
        try:
            _list(sub, (*prefix, name), lines)
        finally:
            os.close(sub)


def _add(lines: list[str], line: str) -> None:
    lines.append(line)
    if len(lines) >= MAX_ENTRIES:
        raise _Full


TOOL = Tool(
    name="list_files",
    description="List the files and folders under a folder of your workspace (default: all of it).",
    parameters=params(
        [], path={"type": "string", "description": "Relative folder path, default '.'"}
    ),
    run=list_files,
)
