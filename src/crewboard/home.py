"""The data home: one directory holding the board, logs, artifacts, workspaces,
sockets and the secret key. Every path the product writes is named here."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

SECRET_KEY_FILE = "secret_key"
WAKE_SOCKET = "supervisor.sock"

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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
    def wake_socket(self) -> Path:
        return self.run_dir / WAKE_SOCKET

    def run_log(self, run_id: int | str) -> Path:
        return self.root / "logs" / "runs" / f"{_checked(run_id)}.jsonl"

    def chat_log(self, session_id: int | str) -> Path:
        return self.root / "logs" / "chat" / f"{_checked(session_id)}.jsonl"

    def artifact_dir(self, run_id: int | str) -> Path:
        return self.root / "artifacts" / _checked(run_id)

    def workspace(self, run_id: int | str) -> Path:
        return self.root / "workspaces" / _checked(run_id)

    def ensure(self) -> Home:
        """Create the directory tree (private to its owner) if missing."""
        for sub in ("", "logs/runs", "logs/chat", "artifacts", "workspaces", "run"):
            path = self.root / sub
            path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        return self

    def secret_key(self) -> bytes:
        """The key that signs cookies: made on first start, mode 0600."""
        path = self.root / SECRET_KEY_FILE
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


def _checked(ident: int | str) -> str:
    text = str(ident)
    if not _SAFE_ID.match(text):
        raise ValueError(f"unsafe id for a path: {text!r}")
    return text
