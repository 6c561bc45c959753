"""The data home: one directory holding the board, logs, artifacts, workspaces,
sockets and the secret key. Every path the product writes is named here."""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SECRET_KEY_FILE = "secret_key"
CONFIG_FILE = "crewboard.toml"
WAKE_SOCKET = "supervisor.sock"
WEB_INFO_FILE = "web.json"

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
        self._unlink(self.run_dir / f"{ident}.stderr")
        self._rmtree(self.workspace(ident))
        self._rmtree(self.artifact_dir(ident))

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
