"""Bringing a data home to life: the directory tree, the secret key, the board
(migrated), on first start an administrator; and saying at start how the shell
tool will run here."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import TextIO

from crewboard.board import db
from crewboard.board import users as board_users
from crewboard.clock import utcnow
from crewboard.config import Config, read_secret_key_file
from crewboard.errors import ConfigError
from crewboard.home import Home, is_home, record_home, recorded_home
from crewboard.passwords import Passwords, check_new_password, random_password

log = logging.getLogger(__name__)


def open_home(config: Config) -> Home:
    """Create the home if needed and connect the board (applying migrations)."""
    home = Home(config.home).ensure()
    home.secret_key()
    if config.secret_key_file:
        # A shared key that cannot be used stops the server at its start.
        read_secret_key_file(config.secret_key_file)
    db.connect(
        home.board_db,
        url=config.database_url,
        statement_timeout_s=config.database_statement_timeout_s,
        pool_size=config.database_pool_size,
    )
    return home


def record_first_start(config: Config) -> None:
    """Before a command makes a new home (a server's first start, ``user
    add --home``): record it in the user's config file, unless that names a
    home already, so that commands run from any folder find it. Only the
    command line does this; code that opens a home for itself (tests,
    benchmarks) leaves the user's config alone."""
    if not is_home(config.home):
        record_home(config.home, os.environ)


def crewboard_command() -> str:
    """How to run this crewboard from any folder: ``crewboard`` when that is
    this installation's script on PATH, else the script's full path (a venv
    that is not activated), else ``python -m crewboard``."""
    script = Path(sys.executable).parent / "crewboard"
    on_path = shutil.which("crewboard")
    if script.is_file():
        if on_path and os.path.samefile(on_path, script):
            return "crewboard"
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m crewboard"


def command_for(home: Path, *args: str) -> str:
    """A crewboard command line for ``home`` that works as printed from any
    folder: with ``--home`` unless the user's config file records this home."""
    recorded = recorded_home(os.environ)
    line = " ".join([crewboard_command(), *(shlex.quote(a) for a in args)])
    if recorded is None or recorded.resolve() != home.resolve():
        line += f" --home {shlex.quote(str(home))}"
    return line


def next_steps(home: Path, email: str) -> str:
    """What the first start prints after the administrator's sign-in: the
    exact commands for a token and a second user, runnable from any folder."""
    steps = [
        ("an API token for curl", command_for(home, "token", "create", email)),
        ("a second user", command_for(home, "user", "add", "someone@example.com")),
        ("a new password", command_for(home, "user", "passwd", email)),
    ]
    width = max(len(what) for what, _ in steps) + 2
    lines = [f"  {(what + ':').ljust(width)}{line}" for what, line in steps]
    return "From any folder, in another terminal:\n" + "\n".join(lines)


def ensure_first_admin(config: Config, out: TextIO = sys.stdout) -> str | None:
    """With an empty board, create the first administrator: from
    CREWBOARD_ADMIN_EMAIL/PASSWORD, or ``admin@localhost`` with a random password
    printed once. Returns the email if an account was made."""
    if board_users.count_users() > 0:
        return None
    email = config.admin_email or "admin@localhost"
    password = config.admin_password
    generated = password is None
    if password is None:
        password = random_password()
    elif problem := check_new_password(password):
        raise ConfigError(f"CREWBOARD_ADMIN_PASSWORD {problem}")
    passwords = Passwords(config.argon2_time_cost, config.argon2_memory_kib)
    user = board_users.create_first_admin(email, passwords.hash(password), now=utcnow())
    if user is None:
        return None  # another process made the first admin a moment ago
    if generated:
        print(
            f"Created the first administrator.\n  email:    {email}\n  password: {password}\n"
            "This password is shown only once.",
            file=out,
        )
    else:
        print(f"Created the first administrator: {email}", file=out)
    print(next_steps(config.home, email), file=out, flush=True)
    log.info("created first administrator %s", email)
    return email


def report_shell_sandbox(config: Config) -> None:
    """Say once, at a server process's start, how the shell tool runs here;
    warn when it cannot run, or runs without a sandbox."""
    if not config.allow_shell:
        return
    sandbox = config.shell_sandbox()
    if sandbox.problem is None:
        log.info(
            "the shell tool runs in bubblewrap (%s), network %s",
            sandbox.bwrap,
            "shared with the host" if config.shell_network else "off",
        )
    elif config.allow_unsandboxed_shell:
        log.warning(
            "the shell tool runs WITHOUT a sandbox (CREWBOARD_ALLOW_UNSANDBOXED_SHELL=1, and "
            "bubblewrap is not available: %s): every user's agents can read and change every "
            "file this server's user can, and reach the network and local services",
            sandbox.problem,
        )
    else:
        log.warning(
            "the shell is enabled but its sandbox (bubblewrap) is not available: %s. Each "
            "shell call fails until bubblewrap works here (CREWBOARD_ALLOW_UNSANDBOXED_SHELL=1 "
            "would let commands run unsandboxed, as this server's user)",
            sandbox.problem,
        )
