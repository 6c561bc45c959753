"""Bringing a data home to life: the directory tree, the secret key, the board
(migrated), and on first start an administrator."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from crewboard.board import db
from crewboard.board import users as board_users
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.errors import ConfigError
from crewboard.home import Home
from crewboard.passwords import Passwords, check_new_password, random_password

log = logging.getLogger(__name__)


def open_home(config: Config) -> Home:
    """Create the home if needed and connect the board (applying migrations)."""
    home = Home(config.home).ensure()
    home.secret_key()
    db.connect(home.board_db, url=config.database_url)
    return home


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
            "This password is shown only once; change it with "
            f"`crewboard user passwd {email}`.",
            file=out,
            flush=True,
        )
    else:
        print(f"Created the first administrator: {email}", file=out, flush=True)
    log.info("created first administrator %s", email)
    return email
