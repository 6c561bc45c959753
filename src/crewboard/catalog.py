"""The agent presets and workflow templates a server offers, as their files
are now.

Parsing every preset's YAML on each chat message or run is most of what a
message costs the web, so a :class:`Catalog` keeps what it parsed and looks
again only when a file changed. Whether one did is inotify's to say (one
non-blocking read per look); where it cannot (no inotify, a missing folder,
a preset that is a symlink to a file elsewhere) each look is a ``stat`` of
the folders and their files, compared with the last load's. Presets and
templates are loaded together, since a template is valid only with the
presets it names. A file left out as broken is logged once, not on every
look.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import trio

try:
    from inotify_simple import INotify, flags
except ImportError:  # not Linux: every look is a scan
    INotify = None
else:
    # Any change of a file in a watched folder, or of the folder itself.
    _MASK = (
        flags.CREATE
        | flags.DELETE
        | flags.MODIFY
        | flags.ATTRIB
        | flags.CLOSE_WRITE
        | flags.MOVED_FROM
        | flags.MOVED_TO
        | flags.DELETE_SELF
        | flags.MOVE_SELF
    )

from crewboard.agents import SUFFIX as PRESET_SUFFIX
from crewboard.agents import Preset, load_presets, shipped_agents_dir
from crewboard.config import Config
from crewboard.workflows import SUFFIX as TEMPLATE_SUFFIX
from crewboard.workflows import Template, load_templates, template_dirs

log = logging.getLogger(__name__)

Signature = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Loaded:
    signature: Signature
    presets: dict[str, Preset]
    templates: dict[str, Template]


def _signature(folders: list[tuple[Path, str]]) -> tuple[Signature, bool]:
    """The folders' files as they are now, and whether a change to any of
    them shows in its folder (none is a symlink, every folder exists)."""
    seen: list[tuple[str, int, int]] = []
    local = True
    for folder, suffix in folders:
        try:
            seen.append((str(folder), folder.stat().st_mtime_ns, 0))
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.endswith(suffix):
                        local = local and not entry.is_symlink()
                        info = entry.stat()
                        seen.append((entry.path, info.st_mtime_ns, info.st_size))
        except OSError:
            seen.append((str(folder), -1, -1))
            local = False
    return tuple(sorted(seen)), local


class _FolderWatch:
    """Whether anything in some folders changed since it was armed, by
    inotify. Where it cannot tell, it says they changed. Its inotify
    instance is closed with it."""

    def __init__(self, folders: list[Path]) -> None:
        self._folders = folders
        self._inotify: INotify | None = None
        self._close: weakref.finalize | None = None
        self._closed = False

    def arm(self) -> None:
        """Watch from now on (before a scan, so a change during it is seen at
        the next look)."""
        self.disarm()
        if INotify is None or self._closed:
            return
        try:
            inotify = INotify(nonblocking=True)
        except OSError:
            return  # the user's inotify limits: scan instead
        try:
            for folder in self._folders:
                inotify.add_watch(folder, _MASK)
        except OSError:
            inotify.close()
            return
        self._inotify = inotify
        self._close = weakref.finalize(self, inotify.close)

    def disarm(self) -> None:
        if self._close is not None:
            self._close()
        self._inotify = self._close = None

    def close(self) -> None:
        """Give the inotify instance back now (a user has only 128 of them,
        across all their processes); from here on it says "changed"."""
        self._closed = True
        self.disarm()

    def changed(self) -> bool:
        if self._inotify is None:
            return True
        try:
            return bool(self._inotify.read(timeout=0))
        except OSError:
            return True


class Catalog:
    """The presets and templates of ``config``'s folders (after the shipped
    ones), re-read only when one of their files changes."""

    def __init__(self, config: Config) -> None:
        self._preset_dirs = [Path(d) for d in config.agents]
        self._template_dirs = template_dirs(config)
        self._folders = [(shipped_agents_dir(), PRESET_SUFFIX)]
        self._folders += [(d, PRESET_SUFFIX) for d in self._preset_dirs]
        self._folders += [(d, TEMPLATE_SUFFIX) for d in self._template_dirs]
        self._watch = _FolderWatch(list(dict.fromkeys(folder for folder, _ in self._folders)))
        self._loaded: Loaded | None = None
        self._reported: set[str] = set()
        self._lock = threading.Lock()

    def load(self) -> Loaded:
        """What the files hold now (blocking: a read of the folders' changes,
        a stat per file when there were any, YAML when one changed)."""
        with self._lock:
            if self._loaded is not None and not self._watch.changed():
                return self._loaded
            self._watch.arm()
            signature, local = _signature(self._folders)
            if not local:
                self._watch.disarm()
            if self._loaded is None or self._loaded.signature != signature:
                presets, errors = load_presets(self._preset_dirs)
                for error in errors:
                    if str(error) not in self._reported:
                        self._reported.add(str(error))
                        log.warning("agent preset left out: %s", error)
                templates = load_templates(self._template_dirs, set(presets))
                self._loaded = Loaded(signature, presets, dict(sorted(templates.items())))
            return self._loaded

    def close(self) -> None:
        """Stop watching the folders: its owner is done with it. Looks after
        this scan the folders."""
        with self._lock:
            self._watch.close()

    async def presets(self) -> dict[str, Preset]:
        """Every loadable preset by id (looked at off the event loop)."""
        return (await trio.to_thread.run_sync(self.load)).presets

    async def templates(self) -> dict[str, Template]:
        """Every template by id, valid or not (looked at off the event loop)."""
        return (await trio.to_thread.run_sync(self.load)).templates
