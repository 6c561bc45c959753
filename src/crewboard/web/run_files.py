"""The files a job's runs leave, as the web process finds and serves them:
finding a run's artifact without ever leaving its folder, among the files
the board keeps (a PostgreSQL board, ``board/artifacts.py``) or else in
this host's home, and rendering a Markdown artifact to sanitised HTML."""

from __future__ import annotations

import html
import logging
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from crewboard.board.artifacts import StoredFile, read_slice
from crewboard.home import Home
from crewboard.web.render import render_markdown

log = logging.getLogger(__name__)

MARKDOWN_SUFFIXES = (".md", ".markdown")
TEXT_SUFFIXES = (".txt", ".text", ".csv", ".tsv", ".json", ".yaml", ".yml", ".log", ".py")
MAX_RENDER_BYTES = 2 * 1024 * 1024

# The rendered page may style itself and show inline images, nothing more: no
# scripts, no fetches, no forms, and a sandbox for good measure.
HTML_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
# Raw artifacts are served the same way, in case a browser is talked into
# rendering one.
RAW_CSP = "default-src 'none'; sandbox"

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}}
pre{{overflow:auto;background:#f5f5f5;padding:.75rem}}code{{font-family:ui-monospace,monospace}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.25rem .5rem}}</style>
</head><body>
{body}
</body></html>
"""


@dataclass(frozen=True)
class Artifact:
    """A run's saved file: in this host's home at ``path``, or kept in the
    board (``path`` None) and read from there."""

    run_id: int
    name: str
    path: Path | None
    size: int

    @property
    def in_board(self) -> bool:
        return self.path is None

    @property
    def is_markdown(self) -> bool:
        return self.name.lower().endswith(MARKDOWN_SUFFIXES)

    @property
    def media_type(self) -> str:
        """Markdown, other text, or opaque bytes: never a type a browser
        would run (HTML, SVG, script)."""
        if self.is_markdown:
            return "text/markdown; charset=utf-8"
        if self.name.lower().endswith(TEXT_SUFFIXES):
            return "text/plain; charset=utf-8"
        return "application/octet-stream"


def _plain_name(name: str | None) -> TypeGuard[str]:
    """A bare file name: no separators, no parent, no NUL."""
    return (
        bool(name) and name not in (".", "..") and not any(ch in name for ch in ("/", "\\", "\0"))  # type: ignore[operator]
    )


def find_artifact(
    home: Home,
    runs: Iterable[tuple[int, str | None]],
    job_artifact: str | None,
    in_board: Mapping[int, list[StoredFile]] | None = None,
) -> Artifact | None:
    """The newest saved file among ``runs`` (``(run_id, artifact name)``,
    newest first): each run's own artifact name, else the job's, else the
    run's only file. A run's files are those the board keeps for it
    (``in_board``) if it keeps any, else its artifact folder in ``home``. A
    name that would leave the run's artifact folder, or a symlink, is never
    followed."""
    in_board = in_board or {}
    for run_id, run_artifact in runs:
        named: list[str] = [n for n in (run_artifact, job_artifact) if _plain_name(n)]
        stored = in_board.get(run_id)
        found = (
            _stored_artifact(run_id, stored, named)
            if stored
            else _home_artifact(home.artifact_dir(run_id), run_id, named)
        )
        if found is not None:
            return found
    return None


def _stored_artifact(run_id: int, stored: list[StoredFile], named: list[str]) -> Artifact | None:
    sizes = {file.name: file.size for file in stored}
    for name in named or (list(sizes) if len(sizes) == 1 else []):
        if name in sizes:
            return Artifact(run_id, name, None, sizes[name])
    return None


def _home_artifact(folder: Path, run_id: int, named: list[str]) -> Artifact | None:
    names = named
    if not names:
        try:
            names = [p.name for p in folder.iterdir()]
        except OSError:
            names = []
        if len(names) != 1:
            names = []
    for name in names:
        found = _regular_file(folder, name)
        if found is not None:
            return Artifact(run_id, name, *found)
    return None


def _regular_file(folder: Path, name: str) -> tuple[Path, int] | None:
    path = folder / name
    try:
        info = os.lstat(path)
        root = folder.resolve(strict=True)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or path.parent.resolve() != root:
        return None
    return path, info.st_size


def open_artifact(artifact: Artifact) -> int:
    """An fd for reading the artifact in the home, refusing a symlink
    swapped in since it was found."""
    assert artifact.path is not None, "a file kept in the board is read with read_slice"
    return os.open(artifact.path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))


def read_artifact(artifact: Artifact, limit: int) -> bytes:
    """Up to ``limit`` + 1 bytes from the start of the artifact, wherever it
    is kept (one more than the limit tells the caller it is over)."""
    if artifact.in_board:
        return read_slice(artifact.run_id, artifact.name, 0, limit + 1)
    fd = open_artifact(artifact)
    with os.fdopen(fd, "rb") as f:
        return f.read(limit + 1)


def render_markdown_page(text: str, title: str) -> str:
    """Markdown as a standalone, sanitised HTML page."""
    return _PAGE.format(title=html.escape(title), body=render_markdown(text))
