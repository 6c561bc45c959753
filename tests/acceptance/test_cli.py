"""The command line as an operator uses it: users, tokens, and `serve`."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import httpx
import pytest

from crewboard.serve import STOP_WITHIN_S
from tests.support import engine
from tests.support.procs import crewboard_env, gone, run_cli, serve, served_url
from tests.support.waits import wait_until

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board

PASSWORD = "s3cret pass phrase"


def login(url: str, email: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}auth/login", json={"email": email, "password": password}, timeout=10)


def test_user_add_list_passwd_promote_remove(tmp_path):
    home = tmp_path / "home"
    added = run_cli(
        "user", "add", "ann@example.test", "--password-stdin", home=home, stdin=PASSWORD + "\n"
    )
    assert added.returncode == 0, added.stderr
    assert "Added user ann@example.test" in added.stdout
    again = run_cli(
        "user", "add", "ANN@example.test", "--password-stdin", home=home, stdin=PASSWORD + "\n"
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    short = run_cli("user", "add", "b@example.test", "--password-stdin", home=home, stdin="short\n")
    assert short.returncode == 1 and "at least 8" in short.stderr
    # No terminal and nothing on stdin (a script, cron): a clear refusal, no traceback.
    for flags in ((), ("--password-stdin",)):
        silent = run_cli("user", "add", "c@example.test", *flags, home=home)
        assert silent.returncode == 1, silent.stderr
        assert "no password" in silent.stderr and "Traceback" not in silent.stderr

    listed = run_cli("user", "list", home=home)
    assert re.search(r"ann@example\.test\s+ann\s+local", listed.stdout)

    assert run_cli("user", "promote", "ann@example.test", home=home).returncode == 0
    assert "admin" in run_cli("user", "list", home=home).stdout
    changed = run_cli(
        "user",
        "passwd",
        "ann@example.test",
        "--password-stdin",
        home=home,
        stdin="another long password\n",
    )
    assert changed.returncode == 0, changed.stderr
    removed = run_cli("user", "remove", "ann@example.test", home=home)
    assert removed.returncode == 0 and "Disabled" in removed.stdout
    assert "disabled" in run_cli("user", "list", home=home).stdout
    purged = run_cli("user", "remove", "ann@example.test", "--purge", home=home)
    assert purged.returncode == 0
    assert "ann@example.test" not in run_cli("user", "list", home=home).stdout
    missing = run_cli("user", "promote", "ghost@example.test", home=home)
    assert missing.returncode == 1 and "no user" in missing.stderr


def test_user_add_prompts_for_the_password_without_echo(tmp_path):
    home = tmp_path / "home"
    # Made before the fork: it keeps this test's own config folder (never the
    # real user's), which the child's cleared environment would lose.
    env = crewboard_env()
    pid, fd = pty.fork()
    if pid == 0:  # the child: a user at a terminal
        os.environ.clear()
        os.environ.update(env)
        os.execv(
            sys.executable,
            [
                sys.executable,
                "-m",
                "crewboard",
                "user",
                "add",
                "tty@example.test",
                "--home",
                str(home),
            ],
        )
    seen = b""
    deadline = time.monotonic() + 30
    answered = 0
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        prompts = seen.count(b"Password: ") + seen.count(b"Again: ")
        if prompts > answered:
            os.write(fd, PASSWORD.encode() + b"\n")
            answered += 1
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert b"Added user tty@example.test" in seen
    assert PASSWORD.encode() not in seen  # typed, never echoed


def test_token_create_prints_a_working_token(tmp_path):
    home = tmp_path / "home"
    run_cli("user", "add", "tok@example.test", "--password-stdin", home=home, stdin=PASSWORD + "\n")
    created = run_cli("token", "create", "tok@example.test", "--name", "laptop", home=home)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("cb_") and "shown only once" in created.stderr
    with serve(home) as proc:
        url = served_url(proc)
        me = httpx.get(f"{url}auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["email"] == "tok@example.test"
        assert me.json()["authMethod"] == "token"
        bad = httpx.get(f"{url}api/tokens", headers={"Authorization": "Bearer cb_nope"})
        assert bad.status_code == 401
        assert proc.stop() == 0


def test_first_start_creates_an_admin_and_prints_the_password_once(tmp_path):
    home = tmp_path / "home"
    with serve(home) as proc:
        proc.wait_for_line(lambda line: "running at" in line)
        out = proc.output()
        password = re.search(r"password: (\S+)", out).group(1)
        url = re.search(r"running at (\S+)", out).group(1)
        assert login(url, "admin@localhost", password).json()["isAdmin"] is True
        assert proc.stop() == 0
    with serve(home) as proc:
        proc.wait_for_line(lambda line: "running at" in line)
        assert "password:" not in proc.output()
        proc.stop()


def test_first_admin_from_the_environment(tmp_path):
    home = tmp_path / "home"
    env = {"CREWBOARD_ADMIN_EMAIL": "Boss@Example.test", "CREWBOARD_ADMIN_PASSWORD": PASSWORD}
    with serve(home, env) as proc:
        url = served_url(proc)
        assert PASSWORD not in proc.output()
        assert login(url, "boss@example.test", PASSWORD).status_code == 200
        proc.stop()


def _children(pid: int) -> dict[str, int]:
    out = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout
    found = {}
    for line in out.splitlines():
        child_pid, args = line.strip().split(" ", 1)
        for name in ("web", "supervisor"):
            if f"crewboard {name}" in args:
                found[name] = int(child_pid)
    return found


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


def _heartbeat(home) -> tuple[int, object] | None:
    """The supervisor's heartbeat row, (pid, beat_at), read as an operator
    would: with sqlite3 from board.db, or from the PostgreSQL board."""
    url = engine.database_url()
    if url is None:
        board = sqlite3.connect(f"file:{home / 'board.db'}?mode=ro", uri=True)
    else:
        import psycopg2

        board = psycopg2.connect(url)
    with closing(board):
        cursor = board.cursor()
        cursor.execute("SELECT pid, beat_at FROM heartbeat")
        return cursor.fetchone()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_restarts_a_dead_child_and_stops_both_on_a_signal(tmp_path, sig):
    home = tmp_path / "home"
    with serve(home) as proc:
        url = served_url(proc)
        children = wait_until(
            lambda: len(_children(proc.popen.pid)) == 2 and _children(proc.popen.pid),
            what="two children",
        )
        os.kill(children["supervisor"], signal.SIGKILL)
        proc.wait_for_line(
            lambda line: "supervisor killed by SIGKILL" in line and "restarting" in line
        )
        restarted = wait_until(
            lambda: (
                (c := _children(proc.popen.pid)).get("supervisor")
                not in (None, children["supervisor"])
                and c
            ),
            timeout_s=15,
            what="a new supervisor",
        )
        assert restarted["web"] == children["web"]
        assert httpx.get(f"{url}auth/me").status_code == 200

        proc.popen.send_signal(sig)
        assert proc.wait_exit() == 0, proc.output()
        # Within 5 s by construction: serve kills what is still running at
        # STOP_WITHIN_S, and says so. Here both stopped on the signal.
        assert STOP_WITHIN_S <= 5
        assert "did not stop in time" not in proc.output()
        assert all(gone(pid) for pid in restarted.values())


def test_serve_children_stay_up_and_go_down_with_serve(tmp_path):
    home = tmp_path / "home"
    with serve(home) as proc:
        url = served_url(proc)
        children = wait_until(
            lambda: len(c := _children(proc.popen.pid)) == 2 and c, what="two children"
        )
        # Stability over time is the point here: serve starts its children
        # from trio worker threads, which retire after 10 s idle, and nothing
        # tied to a thread may stop a child. Once serve is down to its main
        # thread, the same supervisor still beats and the same web answers.
        wait_until(lambda: _threads(proc.popen.pid) == 1, 60, "serve's worker threads to retire")
        beat = _heartbeat(home)
        wait_until(lambda: _heartbeat(home) != beat, 30, "a heartbeat after that")
        assert _heartbeat(home)[0] == children["supervisor"]
        assert _children(proc.popen.pid) == children
        assert httpx.get(f"{url}auth/me").status_code == 200
        assert "restarting" not in proc.output()

        proc.popen.kill()  # serve dies without a chance to clean up
        proc.popen.wait(5)
        wait_until(
            lambda: all(gone(pid) for pid in children.values()),
            timeout_s=15,
            what="the children to stop after serve died",
        )


def test_user_remove_purge_deletes_their_files_too(tmp_path):
    from crewboard.board import db
    from crewboard.board.models import ChatSession, Crew, Job, Run, User
    from crewboard.clock import utcnow
    from crewboard.home import Home

    home = tmp_path / "home"
    for email in ("gone@example.test", "kept@example.test"):
        run_cli("user", "add", email, "--password-stdin", home=home, stdin=PASSWORD + "\n")
    db.connect(home / "board.db", url=engine.database_url())
    paths = Home(home)
    now = utcnow()
    files = {}
    try:
        for user in User.select():
            chat = ChatSession.create(
                owner=user,
                session_name="s",
                agent="assistant",
                model_spec="offline:scripted",
                created_at=now,
                updated_at=now,
            )
            crew = Crew.create(template_id="ask", title="t", owner=user, created_at=now)
            job = Job.create(
                crew=crew,
                owner=user,
                key="k",
                title="k",
                agent="assistant",
                prompt="p",
                status="done",
                available_at=now,
                created_at=now,
                updated_at=now,
            )
            run = Run.create(job=job, supervisor_id="s", started_at=now, outcome="succeeded")
            made = [
                paths.chat_log(chat.id),
                paths.run_log(run.id),
                paths.artifact_dir(run.id) / "a.md",
                paths.workspace(run.id) / "w.txt",
            ]
            for path in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("x")
            files[user.email] = made
    finally:
        db.close()
    assert run_cli("user", "remove", "gone@example.test", "--purge", home=home).returncode == 0
    assert not any(p.exists() for p in files["gone@example.test"])
    assert all(p.exists() for p in files["kept@example.test"])
