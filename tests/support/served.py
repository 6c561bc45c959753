"""A `crewboard serve` on a fresh home for tests that look at the server
from outside (its metrics, its log lines): a workflow that runs the prompt
it is given on the offline model, accounts with API tokens, and a client
per token."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support import engine
from tests.support.procs import Proc, run_cli, serve, served_url

PASSWORD = "correct horse battery staple"

# The prompt goes in whole, and its first line is the job's title.
WORKFLOW = """\
name: Echo
description: Runs the prompt it is given on the offline model.
inputs:
  prompt: {type: string, required: true, maxLength: 60000}
defaults: {agent: assistant, timeout: 120, retries: 0}
jobs:
  echo:
    title: "{{ inputs.prompt | truncate(80) }}"
    prompt: "{{ inputs.prompt }}"
"""


def add_account(
    home: Path, email: str, *, admin: bool = False, env: Mapping[str, str] | None = None
) -> str:
    """Add an account (an administrator if ``admin``) with the CLI, run with
    ``env`` (a board's URL, say); returns an API token of it."""
    flags = ["--admin"] if admin else []
    added = run_cli(
        "user", "add", email, *flags, "--password-stdin", home=home, stdin=PASSWORD, env=env
    )
    assert added.returncode == 0, added.stderr
    created = run_cli("token", "create", email, home=home, env=env)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


@dataclass
class Served:
    home: Path
    url: str
    proc: Proc
    tokens: dict[str, str]
    board_url: str | None = None
    clients: list[httpx.Client] = field(default_factory=list)

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
        """Rows of ``sql`` (``?`` placeholders) on the board this server
        uses: its board.db, or its PostgreSQL database."""
        if self.board_url is None:
            with sqlite3.connect(self.home / "board.db") as conn:
                return conn.execute(sql, params).fetchall()
        import psycopg2

        conn = psycopg2.connect(self.board_url)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), params)
                return cursor.fetchall()
        finally:
            conn.close()

    def client(self, who: str | None) -> httpx.Client:
        """A client with ``who``'s token (``admin`` or ``user``), or none."""
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=60)
        self.clients.append(client)
        return client


@contextmanager
def serving(tmp_path: Path, env: Mapping[str, str] | None = None) -> Iterator[Served]:
    """`crewboard serve` with the echo workflow, an administrator and a
    user, each with a token; stopped (and checked to stop cleanly) after."""
    home = tmp_path / "home"
    workflows = tmp_path / "workflows"
    workflows.mkdir(parents=True, exist_ok=True)
    (workflows / "echo.job_workflow.yaml").write_text(WORKFLOW)
    # Its own board: on PostgreSQL a database of its own, as a test may
    # serve two homes, each with the same accounts.
    with engine.shared_database() as board_url:
        board = {"CREWBOARD_DATABASE_URL": board_url} if board_url else {}
        tokens = {
            "admin": add_account(home, "admin@example.test", admin=True, env=board),
            "user": add_account(home, "user@example.test", env=board),
        }
        settings = {"CREWBOARD_WORKFLOWS": str(workflows), **board, **(env or {})}
        with serve(home, settings) as proc:
            served = Served(home, served_url(proc), proc, tokens, board_url)
            try:
                yield served
            finally:
                for client in served.clients:
                    client.close()
            assert proc.stop() == 0, proc.output()
