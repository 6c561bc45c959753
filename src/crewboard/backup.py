"""``crewboard backup`` and ``crewboard restore``: a consistent copy of a data
home, taken while the server runs, and its way back.

A backup is a folder: ``board.db`` first, copied with SQLite's online backup
API (one read transaction, so it is one instant of the board and writers are
never blocked under WAL), then the run and chat logs, the artifacts, the
secret key in use (the home's, or the shared file ``CREWBOARD_SECRET_KEY_FILE``
names; mode 0600) and ``crewboard.toml``, and a manifest last. It
is built beside its destination and renamed into place, so a folder with a
manifest is always complete. Workspaces (scratch space of runs) and ``run/``
(sockets, pids) are left out.

Files are copied after the board, so everything the board copy knows of is
there: a done job's log and artifact were written before it was done. Logs of
runs still going are copied as far as they got; on restore, the first
supervisor recovers those runs as it would after a crash.

With the board in PostgreSQL the backup holds the files only (the manifest
says so): the database is backed up with ``pg_dump``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from crewboard import __version__
from crewboard.clock import iso, utcnow
from crewboard.errors import CrewboardError
from crewboard.home import Home

MANIFEST = "crewboard-backup.json"
FORMAT = 1
BOARD_DB = "board.db"
# Trees of the home a backup carries, and single files (mode kept).
TREES = ("logs", "artifacts")
SECRET_KEY = "secret_key"
FILES = (SECRET_KEY, "crewboard.toml")
PRIVATE_FILES = (SECRET_KEY,)
PG_DUMP = 'pg_dump --format=custom --file=board.pgdump "$CREWBOARD_DATABASE_URL"'
PG_RESTORE = 'pg_restore --clean --if-exists --dbname="$CREWBOARD_DATABASE_URL" board.pgdump'


class BackupError(CrewboardError):
    """A backup or restore cannot be made as asked (a destination in use, a
    running server, a folder that is not a backup)."""


@dataclass(frozen=True)
class Copied:
    """What a backup or restore copied."""

    path: Path
    board: bool  # whether board.db was part of it
    files: int
    bytes: int


# --- backup -------------------------------------------------------------------


def backup_home(
    home: Home, dest: Path, *, external_board: bool = False, secret_key_file: Path | None = None
) -> Copied:
    """Copy ``home`` into the new folder ``dest`` (absent or empty).
    ``external_board``: the board is in PostgreSQL; copy the files only.
    ``secret_key_file``: the key the web signs with is this shared file, not
    the home's; the backup holds it as its ``secret_key``, so a home
    restored from it keeps everyone signed in wherever the key lives."""
    dest = dest.absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} exists and is not an empty folder")
    if not external_board and not home.board_db.exists():
        raise BackupError(f"no board at {home.board_db}: is {home.root} a crewboard home?")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700)
    try:
        if not external_board:
            copy_sqlite(home.board_db, partial / BOARD_DB)
        key = secret_key_file.resolve() if secret_key_file is not None else None
        if key is not None and not key.is_file():
            raise BackupError(f"the secret key file {secret_key_file} cannot be read")
        files, size = _copy_home_files(home.root, partial, key)
        manifest = {
            "format": FORMAT,
            "version": __version__,
            "createdAt": iso(utcnow()),
            "source": str(home.root),
            "board": "sqlite" if not external_board else "external",
            "secretKey": "CREWBOARD_SECRET_KEY_FILE" if key is not None else "home",
            "files": files,
            "bytes": size,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(partial, dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Copied(dest, not external_board, files, size)


def copy_sqlite(source: Path, target: Path, *, static: bool = False) -> None:
    """A consistent copy of the SQLite file ``source`` while others write to
    it (``static``: nothing does, as in a backup), checked before it is
    kept; mode 0600."""
    # mode=rw: opening must not create an empty board where none is;
    # immutable: a backup is read without locks or a -shm file beside it.
    mode = "mode=ro&immutable=1" if static else "mode=rw"
    src = sqlite3.connect(f"file:{quote(str(source))}?{mode}", uri=True, timeout=60)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        dst = sqlite3.connect(target)
        try:
            # All pages in one step: one read transaction, one instant.
            src.backup(dst)
            (verdict,) = dst.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise BackupError(f"the copy of the board does not check out: {verdict}")
        finally:
            dst.close()
    finally:
        src.close()


def _copy_home_files(source: Path, target: Path, secret_key: Path | None = None) -> tuple[int, int]:
    """Copy the trees and files a backup holds (the key from ``secret_key``
    if given); returns (files, bytes)."""
    files = size = 0
    for name in TREES:
        n, b = _copy_tree(source / name, target / name)
        files, size = files + n, size + b
    for name in FILES:
        origin = secret_key if name == SECRET_KEY and secret_key is not None else source / name
        copied = _copy_file(origin, target / name)
        if copied is not None:
            files, size = files + 1, size + copied
            if name in PRIVATE_FILES:
                os.chmod(target / name, 0o600)
    return files, size


def _copy_tree(source: Path, target: Path) -> tuple[int, int]:
    """Copy regular files and folders under ``source``, never following a
    link; a file that vanishes meanwhile (pruned, a chat deleted) is skipped."""
    files = size = 0
    if not source.is_dir():
        return 0, 0
    target.mkdir(mode=0o700, exist_ok=True)
    for folder, dirs, names in os.walk(source):
        rel = Path(folder).relative_to(source)
        for name in dirs:
            with contextlib.suppress(FileExistsError):
                (target / rel / name).mkdir(mode=0o700)
        for name in names:
            copied = _copy_file(Path(folder) / name, target / rel / name)
            if copied is not None:
                files, size = files + 1, size + copied
    return files, size


def _copy_file(source: Path, target: Path) -> int | None:
    """Copy one regular file with its mode; None if it is missing or not a
    regular file."""
    try:
        if not source.is_file() or source.is_symlink():
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
        return target.stat().st_size
    except FileNotFoundError:
        return None


# --- restore ------------------------------------------------------------------


def read_manifest(src: Path) -> dict:
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{src} is not a crewboard backup (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read {src / MANIFEST}: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{src} is a backup of an unknown format: {manifest.get('format')}")
    return manifest


def home_is_empty(home: Home) -> bool:
    """Whether the home holds no file at all (empty folders do not count)."""
    if not home.root.exists():
        return True
    return not any(names for _, _, names in os.walk(home.root))


def server_in_home(home: Home) -> str | None:
    """Why a server seems to run on this home (on this host), or None: a
    supervisor bound to the wake socket, or a live web process."""
    if home.wake_socket.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect(str(home.wake_socket))
            return f"a supervisor listens on {home.wake_socket}"
        except OSError:
            pass  # a socket left by a supervisor that died
        finally:
            probe.close()
    try:
        pid = int(json.loads(home.web_info.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _is_crewboard_process(pid):
        return f"a web server runs on it (pid {pid})"
    return None


def _is_crewboard_process(pid: int) -> bool:
    """Whether ``pid`` is a live crewboard process (any live process where
    ``/proc`` cannot tell)."""
    if Path("/proc/self").exists():
        try:
            return b"crewboard" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            return False  # gone, or gone while we read
        except OSError:
            return True  # alive, as another user
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass
    return True


def restore_home(src: Path, home: Home, *, force: bool = False) -> Copied:
    """Copy the backup ``src`` into ``home``, which must hold no files unless
    ``force`` (then the board, logs, artifacts, workspaces and key it holds
    are replaced). The caller checks first that no server runs on it."""
    src = src.absolute()
    manifest = read_manifest(src)
    if not force and not home_is_empty(home):
        raise BackupError(f"{home.root} is not empty: restore into an empty home, or use --force")
    has_board = (src / BOARD_DB).exists()
    if manifest.get("board") == "sqlite" and not has_board:
        raise BackupError(f"{src} lacks its {BOARD_DB}")
    home.root.mkdir(parents=True, exist_ok=True)
    os.chmod(home.root, 0o700)
    for name in (*TREES, "workspaces"):
        shutil.rmtree(home.root / name, ignore_errors=True)
    for name in (*FILES, f"{BOARD_DB}-wal", f"{BOARD_DB}-shm"):
        (home.root / name).unlink(missing_ok=True)
    files, size = _copy_home_files(src, home.root)
    if has_board:
        # Last, and whole: a board appears only with its files in place.
        partial = home.root / f"{BOARD_DB}.restoring"
        partial.unlink(missing_ok=True)
        copy_sqlite(src / BOARD_DB, partial, static=True)
        os.replace(partial, home.board_db)
    home.ensure()
    return Copied(home.root, has_board, files, size)
