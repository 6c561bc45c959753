"""The command line finds the server's home from any folder, as a newcomer
runs it: the real ``crewboard`` script of this installation, started in
other folders than the one the server was started in, without --home."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.procs import Proc, crewboard_env, served_url

# It opens boards outside the board fixtures (make_config, crewboard commands).
# The README's first command on its embedded defaults: the home it makes
# holds a SQLite board.db.
pytestmark = [
    pytest.mark.board,
    pytest.mark.sqlite_only("the first start's embedded default is a SQLite board.db in the home"),
]

CREWBOARD = str(Path(sys.executable).parent / "crewboard")
PASSWORD = "s3cret pass phrase"


def crewboard(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The command as typed in a terminal in ``cwd``: no --home."""
    return subprocess.run(
        [CREWBOARD, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=crewboard_env(),
    )


def first_start(project: Path) -> tuple[Proc, str]:
    """`crewboard serve` in ``project`` as the README's first command runs it."""
    project.mkdir(parents=True, exist_ok=True)
    proc = Proc([CREWBOARD, "serve", "--port", "0"], cwd=project)
    return proc, served_url(proc)


def printed_command(output: str, what: str) -> str:
    line = next(line for line in output.splitlines() if line.strip().startswith(what + ":"))
    return line.split(":", 1)[1].strip()


def test_commands_run_from_another_folder_use_the_home_the_first_start_made(tmp_path):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc, url = first_start(project)
    with proc:
        out = proc.output()
        assert (project / ".crewboard" / "board.db").exists()
        token_line = printed_command(out, "an API token for curl")
        second_line = printed_command(out, "a second user")
        assert "--home" not in token_line, "the home is recorded: no --home needed"
        assert token_line.endswith("token create admin@localhost")

        # The exact printed command, in a shell, from another folder.
        token = subprocess.run(
            ["bash", "-c", token_line],
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=60,
            env=crewboard_env(),
        )
        assert token.returncode == 0, token.stderr
        secret = token.stdout.strip()
        me = httpx.get(f"{url}auth/me", headers={"Authorization": f"Bearer {secret}"})
        assert me.json()["email"] == "admin@localhost"

        added = subprocess.run(
            [
                "bash",
                "-c",
                second_line.replace("someone@example.com", "sam@example.test")
                + " --password-stdin",
            ],
            cwd=elsewhere,
            input=PASSWORD + "\n",
            capture_output=True,
            text=True,
            timeout=60,
            env=crewboard_env(),
        )
        assert added.returncode == 0, added.stderr
        signed_in = httpx.post(
            f"{url}auth/login", json={"email": "sam@example.test", "password": PASSWORD}
        )
        assert signed_in.status_code == 200
        assert not (elsewhere / ".crewboard").exists(), "no second home was made"
        assert proc.stop() == 0


def test_a_subfolder_of_the_project_finds_its_home_by_walking_up(tmp_path):
    project = tmp_path / "project"
    proc, _ = first_start(project)
    with proc:
        assert proc.stop() == 0
    # Another user config (or none): only the walk up can find it.
    deep = project / "src" / "deeper"
    deep.mkdir(parents=True)
    env_home = tmp_path / "other-config"
    listed = subprocess.run(
        [CREWBOARD, "user", "list"],
        cwd=deep,
        capture_output=True,
        text=True,
        timeout=60,
        env=crewboard_env({"XDG_CONFIG_HOME": str(env_home)}),
    )
    assert listed.returncode == 0, listed.stderr
    assert "admin@localhost" in listed.stdout


def test_a_command_that_would_make_an_empty_home_refuses_and_says_where_it_looked(tmp_path):
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    for args in (
        ["token", "create", "admin@localhost"],
        ["user", "passwd", "admin@localhost", "--password-stdin"],
        ["user", "add", "ann@example.test", "--password-stdin"],
        ["user", "list"],
        ["prune", "--dry-run"],
        ["health"],
    ):
        done = crewboard(*args, cwd=nowhere, stdin=PASSWORD + "\n")
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        said = done.stderr
        assert "no crewboard home found" in said, said
        assert str(nowhere / ".crewboard") in said
        assert re.search(r"xdg-config\d*/crewboard/config\.toml \(records no home\)", said), said
        assert "--home" in said
    assert os.listdir(nowhere) == [], "nothing was made"


def test_a_named_home_that_is_not_one_is_refused_but_user_add_may_make_it(tmp_path):
    typo = tmp_path / "crewbaord"
    done = crewboard("token", "create", "admin@localhost", "--home", str(typo), cwd=tmp_path)
    assert done.returncode == 1
    assert f"{typo} (--home) is not a crewboard home" in done.stderr
    assert not typo.exists()
    added = crewboard(
        "user",
        "add",
        "ann@example.test",
        "--password-stdin",
        "--home",
        str(typo),
        cwd=tmp_path,
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert (typo / "board.db").exists()


def test_a_second_homes_first_start_prints_its_commands_with_home(tmp_path):
    first, _ = first_start(tmp_path / "one")
    with first:
        assert first.stop() == 0
    second, _ = first_start(tmp_path / "two")
    with second:
        out = second.output()
        token_line = printed_command(out, "an API token for curl")
        home = tmp_path / "two" / ".crewboard"
        assert token_line.endswith(f"token create admin@localhost --home {home}")
        made = subprocess.run(
            ["bash", "-c", token_line],
            cwd=tmp_path / "one",  # the other project's folder, even
            capture_output=True,
            text=True,
            timeout=60,
            env=crewboard_env(),
        )
        assert made.returncode == 0, made.stderr
        assert second.stop() == 0
