"""The data home: one directory holding the board, logs, artifacts, workspaces,
sockets and the secret key. Every path the product writes is named here, and
so is how a command finds the home (:func:`locate_home`).

Every command, server or not, looks for the home the same way: ``--home``,
else ``$CREWBOARD_HOME``, else a ``.crewboard`` home in the current folder
or one of its parents (as git finds ``.git``), else ``./.crewboard``. A
command that is not a server looks once more before that last default: in
the home the first start recorded in the user's config file
(``$XDG_CONFIG_HOME/crewboard/config.toml``, ``CREWBOARD_HOME = "..."``), so
it works from any folder. A server started in a new folder makes a new home
there, as the README's first command promises. Only a server (and a command
told where, such as ``user add --home``) makes a new home; the others refuse
and say where they looked.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECRET_KEY_FILE = "secret_key"
CONFIG_FILE = "crewboard.toml"
WAKE_SOCKET = "supervisor.sock"
WEB_INFO_FILE = "web.json"
DEFAULT_HOME = ".crewboard"
USER_CONFIG = Path("crewboard") / "config.toml"

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

log = logging.getLogger(__name__)


class Home:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    @property
    def board_db(self) -> Path:
        return self.root / "board.db"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    @property
    def workspaces_dir(self) -> Path:
        return self.root / "workspaces"

    @property
    def secret_key_file(self) -> Path:
        return self.root / SECRET_KEY_FILE

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def web_info(self) -> Path:
        """Where the web process leaves its bound URL and pid."""
        return self.run_dir / WEB_INFO_FILE

    @property
    def wake_socket(self) -> Path:
        return self.run_dir / WAKE_SOCKET

    def provider_dir(self, provider: str) -> Path:
        """A model provider's state shared by the host's runners: its
        concurrency slots, and what its runners learnt of the server."""
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", provider)[:64] or "_"
        return self.run_dir / "providers" / safe

    def run_log(self, run_id: int | str) -> Path:
        return self.root / "logs" / "runs" / f"{_checked(run_id)}.jsonl"

    def run_stderr(self, run_id: int | str) -> Path:
        """A runner's stderr, kept beside its log when it wrote any."""
        return self.run_log(run_id).with_suffix(".stderr")

    def chat_log(self, session_id: int | str) -> Path:
        return self.root / "logs" / "chat" / f"{_checked(session_id)}.jsonl"

    def artifact_dir(self, run_id: int | str) -> Path:
        return self.root / "artifacts" / _checked(run_id)

    def workspace(self, run_id: int | str) -> Path:
        return self.root / "workspaces" / _checked(run_id)

    def chat_workspace_id(self, session_id: int | str) -> str:
        """Chat turns share one workspace (and artifact folder) per session."""
        return f"chat-{_checked(session_id)}"

    def remove_run_files(self, run_ids: Iterable[int]) -> None:
        """Delete the log, artifacts and workspace of each run (already gone
        from the board); what is missing is skipped, what fails is logged."""
        for run_id in run_ids:
            self._unlink(self.run_log(run_id))
            self._unlink(self.run_stderr(run_id))
            self._rmtree(self.artifact_dir(run_id))
            self._rmtree(self.workspace(run_id))

    def run_files_bytes(self, run_ids: Iterable[int]) -> int:
        """The bytes the logs, artifacts and workspaces of these runs take."""
        return sum(
            size_bytes(path)
            for run_id in run_ids
            for path in (
                self.run_log(run_id),
                self.run_stderr(run_id),
                self.artifact_dir(run_id),
                self.workspace(run_id),
            )
        )

    def chat_files_bytes(self, session_ids: Iterable[int]) -> int:
        """The bytes the logs, workspaces and files of these chats take."""
        total = 0
        for session_id in session_ids:
            ident = self.chat_workspace_id(session_id)
            for path in (
                self.chat_log(session_id),
                self.workspace(ident),
                self.artifact_dir(ident),
            ):
                total += size_bytes(path)
        return total

    def remove_chat_files(self, session_id: int) -> None:
        """Delete a chat session's log, workspace and saved files."""
        ident = self.chat_workspace_id(session_id)
        self._unlink(self.chat_log(session_id))
        self._rmtree(self.workspace(ident))
        self._rmtree(self.artifact_dir(ident))

    def ids_with_files(self) -> tuple[set[int], set[int]]:
        """The run ids and the chat session ids that have any log, workspace
        or saved files in this home."""
        runs: set[int] = set()
        chats: set[int] = set()
        for folder in (self.root / "logs" / "runs", self.artifacts_dir, self.workspaces_dir):
            runs |= _ids_in(folder, prefix="")
        for folder in (self.artifacts_dir, self.workspaces_dir):
            chats |= _ids_in(folder, prefix="chat-")
        chats |= _ids_in(self.root / "logs" / "chat", prefix="")
        return runs, chats

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove %s: %s", path, exc)

    @staticmethod
    def _rmtree(folder: Path) -> None:
        if not folder.exists():
            return
        if sys.version_info >= (3, 12):
            shutil.rmtree(folder, onexc=_writable_and_retry)
        else:
            shutil.rmtree(folder, onerror=_writable_and_retry)

    def ensure(self) -> Home:
        """Create the directory tree (private to its owner) if missing."""
        for sub in ("", "logs/runs", "logs/chat", "artifacts", "workspaces", "run"):
            path = self.root / sub
            path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        return self

    def secret_key(self) -> bytes:
        """The key that signs cookies: made on first start, mode 0600."""
        path = self.secret_key_file
        try:
            return path.read_bytes().strip()
        except FileNotFoundError:
            pass
        key = secrets.token_urlsafe(48).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return key


def size_bytes(path: Path) -> int:
    """Bytes under ``path`` (a file or a folder), not following links; 0 if
    it is missing."""
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
    except OSError:
        return 0
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _ids_in(folder: Path, *, prefix: str) -> set[int]:
    """The ids named by the entries of ``folder``: ``<prefix><id>`` with an
    optional suffix (``.jsonl``, ``.stderr``)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return set()
    found = set()
    for name in names:
        stem = name.split(".", 1)[0]
        digits = stem[len(prefix) :]
        if stem.startswith(prefix) and digits.isascii() and digits.isdigit():
            found.add(int(digits))
    return found


def _checked(ident: int | str) -> str:
    text = str(ident)
    if not _SAFE_ID.match(text):
        raise ValueError(f"unsafe id for a path: {text!r}")
    return text


def _writable_and_retry(func: Any, path: str, exc: Any) -> None:
    """A run may leave read-only files and folders behind: make the parent
    writable and try once more; log what still fails."""
    try:
        os.chmod(os.path.dirname(path), 0o700)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
        func(path)
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)


def is_home(path: Path) -> bool:
    """Whether ``path`` holds a home a server has started in (or a command
    was told to make): its secret key or its board."""
    return (path / SECRET_KEY_FILE).is_file() or (path / "board.db").is_file()


def user_config_file(environ: Mapping[str, str]) -> Path:
    """The user's crewboard config file, where the first start records its home."""
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".config"
    )
    return Path(base) / USER_CONFIG


def recorded_home(environ: Mapping[str, str]) -> Path | None:
    """The home recorded in the user's config file, if any (whether or not
    it is still there)."""
    try:
        with open(user_config_file(environ), "rb") as f:
            value = tomllib.load(f).get("CREWBOARD_HOME")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return Path(value).expanduser() if isinstance(value, str) and value else None


def record_home(root: Path, environ: Mapping[str, str]) -> Path | None:
    """Record ``root`` in the user's config file so that commands run from
    any folder find it, unless the file already names a home that exists.
    Returns the file written, or None (already recorded elsewhere, or it
    could not be written: that is logged, the home works all the same)."""
    current = recorded_home(environ)
    if current is not None and is_home(current):
        return None
    path = user_config_file(environ)
    text = (
        "# Written by crewboard's first start: the home commands use when run from\n"
        "# a folder with no .crewboard of its own and no --home or CREWBOARD_HOME.\n"
        f"CREWBOARD_HOME = {_toml_string(str(root))}\n"
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not record the home in %s: %s", path, exc)
        return None
    return path


def _toml_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped) + '"'


@dataclass(frozen=True)
class HomeSearch:
    """Where a command's home is (``path``), how it was chosen (``how``:
    ``flag``, ``env``, ``found``, ``recorded`` or ``default``), and the
    places looked at on the way, for a message when there is none."""

    path: Path
    how: str
    looked: tuple[str, ...] = field(default=())

    @property
    def named(self) -> bool:
        """The user said where the home is (``--home`` or ``CREWBOARD_HOME``)."""
        return self.how in ("flag", "env")

    def missing(self) -> str:
        """Why there is no home here, naming where it looked, and what to do."""
        if self.named:
            where = "--home" if self.how == "flag" else "CREWBOARD_HOME"
            return (
                f"{self.path} ({where}) is not a crewboard home: it has no board.db or "
                "secret_key. Check the path, or start the server there first "
                f"(crewboard serve --home {self.path})"
            )
        return (
            "no crewboard home found; looked in: "
            + "; ".join(self.looked)
            + ". Pass --home DIR (or set CREWBOARD_HOME), run this from the folder where "
            "you started `crewboard serve`, or start the server first"
        )


def locate_home(
    flag: str | os.PathLike[str] | None,
    environ: Mapping[str, str],
    cwd: Path | None = None,
    *,
    use_record: bool = True,
) -> HomeSearch:
    """Find the home as every command does (see the module docstring); a
    server passes ``use_record=False``. The result may not exist yet
    (``how`` is then ``default``, or the one the user named); :func:`is_home`
    says."""
    if flag:
        return HomeSearch(Path(flag).expanduser().resolve(), "flag")
    if environ.get("CREWBOARD_HOME"):
        return HomeSearch(Path(environ["CREWBOARD_HOME"]).expanduser().resolve(), "env")
    cwd = (cwd or Path.cwd()).resolve()
    looked = ["--home (not given)", "$CREWBOARD_HOME (not set)"]
    for folder in (cwd, *cwd.parents):
        if is_home(folder / DEFAULT_HOME):
            return HomeSearch(folder / DEFAULT_HOME, "found")
    looked.append(f"{cwd / DEFAULT_HOME} and every parent folder's {DEFAULT_HOME}")
    if not use_record:
        return HomeSearch(cwd / DEFAULT_HOME, "default", tuple(looked))
    recorded = recorded_home(environ)
    config_file = user_config_file(environ)
    if recorded is not None and is_home(recorded.resolve()):
        return HomeSearch(recorded.resolve(), "recorded")
    if recorded is None:
        looked.append(f"{config_file} (records no home)")
    else:
        looked.append(f"{recorded}, recorded in {config_file} (no home there now)")
    return HomeSearch(cwd / DEFAULT_HOME, "default", tuple(looked))
