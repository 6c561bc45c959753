"""A hostile tenant against a real server: `crewboard serve` with the shell
enabled, attacked by a signed-in ordinary user from inside her own runs (a job
on the ``coder`` preset, and a chat turn), through the HTTP API, with the
offline model's ``/tool`` directives. Every vector must reach nothing:

- the provider key and the first administrator's password, in
  ``/proc/<pid>/environ`` (and ``cmdline``) of the web, supervisor and runner;
- ``board.db``, ``secret_key``, an env file under ``/etc``, another user's
  workspace, chat log and saved files;
- writes outside the workspace: the data home, the server's own installation
  (a ``.pth`` file in its site-packages), ``/etc``, the host's ``/tmp``;
- the network with the network off: the server's own port and a database's;
- ``http_get`` to loopback, private, link-local and IPv6 addresses, names that
  resolve to loopback, and redirects to each of these.

Without bubblewrap the shell refuses every call with a clear error, unless the
operator allowed an unsandboxed shell, which runs with a warning at every start
and still cannot read the server processes' environment.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import socket
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import pytest

from crewboard.sessionlog import read_records
from tests.support import need
from tests.support.procs import child_processes, run_cli, serve, served_url
from tests.support.waits import wait_until

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board

KEY = "sk-hostile-" + uuid.uuid4().hex
ADMIN_PASSWORD = "admin pass " + uuid.uuid4().hex
PASSWORD = "tenant pass phrase"
BOB_SECRETS = ("BOB-WORKSPACE-" + uuid.uuid4().hex[:8], "BOB-ARTIFACT-" + uuid.uuid4().hex[:8])
BOB_CHAT = "BOB-CHAT-" + uuid.uuid4().hex[:8]
ETC_SECRET = "ETC-ENV-" + uuid.uuid4().hex[:8]
# Matches the secrets' lines, and (bracketed) never its own text in a cmdline.
SECRET_PATTERN = "OPENAI_API_KE[Y]|_PASSWOR[D]|sk-hostil[e]"
UNAVAILABLE = "the shell is enabled but its sandbox (bubblewrap) is not available"

# A template per preset: ``coder`` has the shell, ``researcher`` http_get.
WORKFLOW = """\
name: Probe with {agent}
description: Runs the prompt it is given on the {agent} preset.
inputs:
  prompt: {{type: string, required: true, maxLength: 60000}}
defaults: {{agent: {agent}, timeout: 120, retries: 0}}
jobs:
  probe:
    title: probe
    prompt: "{{{{ inputs.prompt }}}}"
"""


class Server:
    """`crewboard serve` on a fresh home, its web and supervisor pids, and
    signed-in clients."""

    def __init__(self, home: Path, url: str, proc: Any) -> None:
        self.home = home
        self.url = url
        self.proc = proc
        children = {}
        for pid, _, cmdline in child_processes(proc.popen.pid):
            for name in ("web", "supervisor"):
                if f"\0{name}\0".encode() in cmdline:
                    children[name] = pid
        self.pids = children
        self.clients: list[httpx.Client] = []

    def client(self, email: str) -> httpx.Client:
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(self.url))
        client = httpx.Client(base_url=self.url, headers={"Origin": origin}, timeout=60)
        self.clients.append(client)
        response = client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return client


@contextmanager
def running_server(tmp_path: Path, **env: str) -> Iterator[Server]:
    home = tmp_path / "home"
    workflows = tmp_path / "workflows"
    workflows.mkdir(exist_ok=True)
    for agent in ("coder", "researcher"):
        (workflows / f"{agent}.job_workflow.yaml").write_text(WORKFLOW.format(agent=agent))
    settings = {
        "CREWBOARD_ALLOW_SHELL": "1",
        "CREWBOARD_WORKFLOWS": str(workflows),
        "OPENAI_API_KEY": KEY,
        "CREWBOARD_ADMIN_EMAIL": "root@example.test",
        "CREWBOARD_ADMIN_PASSWORD": ADMIN_PASSWORD,
        **env,
    }
    with serve(home, settings) as proc:
        url = served_url(proc)
        for email in ("alice@example.test", "bob@example.test"):
            added = run_cli("user", "add", email, "--password-stdin", home=home, stdin=PASSWORD)
            assert added.returncode == 0, added.stderr
        server = Server(home, url, proc)
        assert set(server.pids) == {"web", "supervisor"}, proc.output()
        try:
            yield server
        finally:
            for client in server.clients:
                client.close()
        proc.stop()


def run_job(
    server: Server, client: httpx.Client, prompt: str, agent: str = "coder"
) -> list[dict[str, Any]]:
    """Start a job with ``prompt`` on the ``agent`` preset; its log once it ends."""
    body = {"templateId": agent, "inputs": {"prompt": prompt}}
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 201, response.text
    job_id = response.json()["jobIds"][0]

    def ended() -> dict[str, Any] | None:
        detail = client.get(f"/api/jobs/{job_id}").json()
        return detail if detail["job"]["status"] in ("done", "blocked") else None

    detail: Any = wait_until(ended, timeout_s=90, what=f"job {job_id} to end")
    run_id = detail["runs"][0]["id"]
    return read_records(server.home / "logs" / "runs" / f"{run_id}.jsonl")


def chat_turn(server: Server, client: httpx.Client, message: str) -> list[dict[str, Any]]:
    """One chat turn on the coder preset (a runner of the web process); its log."""
    session = client.post("/api/session/create", json={"agent": "coder"}).json()
    turn = client.post(f"/api/session/newUserMessage/{session['id']}", json={"message": message})
    assert turn.status_code == 200, turn.text
    return read_records(server.home / "logs" / "chat" / f"{session['id']}.jsonl")


def results(records: list[dict[str, Any]]) -> list[str]:
    return [str(r["result"]) for r in records if r["type"] == "agent_tool_end"]


def shell(command: str) -> str:
    return "/tool shell " + json.dumps({"command": command, "timeout_s": 50})


def environ_probe(pids: list[int], *, every_process: bool = True) -> str:
    """Shell lines that try to read the environment and command line of
    ``pids``, of the shell's parent and (``every_process``) of every process
    visible; they print only lines that name a secret, so nothing is lost to
    the output cap."""
    targets = " ".join(str(pid) for pid in pids)
    visible = "$(ls /proc | grep '^[0-9]')" if every_process else ""
    return textwrap.dedent(
        f"""\
        for p in {targets} $PPID {visible}; do
          for f in environ cmdline; do
            if cat /proc/$p/$f >/dev/null 2>&1; then
              tr '\\0' '\\n' < /proc/$p/$f | grep -E '{SECRET_PATTERN}' \\
                | sed "s/^/LEAK $p $f: /"
            else
              echo "closed $p $f"
            fi
          done
        done
        echo probe-done
        """
    )


def server_secrets(server: Server) -> list[str]:
    return [KEY, ADMIN_PASSWORD, (server.home / "secret_key").read_text().strip()]


@pytest.fixture
def etc_env_file() -> Iterator[Path]:
    """An operator's env file under /etc, as the systemd guide once kept."""
    folder = Path("/etc/crewboard-test-" + uuid.uuid4().hex[:8])
    need(os.access("/etc", os.W_OK), "writing a test env file under /etc needs root")
    folder.mkdir()
    path = folder / "env"
    path.write_text(f"OPENAI_API_KEY={ETC_SECRET}\n")
    try:
        yield path
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def listener() -> Iterator[int]:
    """A port on the host's loopback that counts who connects (a stand-in for
    a database or any other local service)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.1)
    hits: list[int] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            hits.append(1)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join(5)
    sock.close()
    assert hits == [], "a connection reached the host's loopback"


def _plant_bobs_files(server: Server) -> None:
    bob = server.client("bob@example.test")
    records = run_job(
        server,
        bob,
        "/tool write_file "
        + json.dumps({"path": "notes.txt", "content": BOB_SECRETS[0]})
        + "\n/artifact bob.md\n"
        + BOB_SECRETS[1],
    )
    assert records[-1]["type"] == "final_result", records[-1]
    chat_turn(server, bob, BOB_CHAT)


def test_a_tenant_reaches_nothing_from_the_sandboxed_shell(
    tmp_path: Path, etc_env_file: Path, listener: int
) -> None:
    need(shutil.which("bwrap"), "bubblewrap (bwrap) is not installed")
    need(Path("/usr/bin/python3").exists(), "a system python3 for the network probe")
    with running_server(tmp_path) as server:
        _plant_bobs_files(server)
        alice = server.client("alice@example.test")
        home = server.home
        venv_pth = Path(site.getsitepackages()[0]) / f"hostile-{uuid.uuid4().hex[:6]}.pth"
        host_tmp = Path("/tmp") / f"hostile-{uuid.uuid4().hex[:6]}"
        planted = [home / "planted", venv_pth, etc_env_file.parent / "planted", host_tmp]
        planted += [home / "workspaces" / "1" / "planted", home / "artifacts" / "1" / "planted"]
        port = urlsplit(server.url).port
        reads = " ".join(
            str(p)
            for p in (
                home / "board.db",
                home / "secret_key",
                etc_env_file,
                *home.glob("workspaces/*/notes.txt"),
                *home.glob("artifacts/*/bob.md"),
                *home.glob("logs/chat/*.jsonl"),
                *home.glob("logs/runs/*.jsonl"),
            )
        )
        connect = (
            "import socket\n"
            f"for host, port in [('127.0.0.1', {port}), ('127.0.0.1', {listener}),"
            " ('127.0.0.1', 5432), ('127.0.0.1', 6379), ('::1', 5432), ('1.1.1.1', 80)]:\n"
            "    try:\n"
            "        socket.create_connection((host, port), 2).close()\n"
            "        print('REACH' + 'ED', port)\n"
            "    except OSError as exc:\n"
            "        print('unreachable', port, exc)\n"
        )
        attack = "\n".join(
            [
                f"cat {reads} 2>&1 | head -c 20000",
                f"ls -la {home} {home}/workspaces {home}/logs/chat / /etc 2>&1",
                *(f"echo pwned > {p} 2>&1" for p in planted),
                f"/usr/bin/python3 - <<'EOF'\n{connect}EOF",
                environ_probe(list(server.pids.values())),
            ]
        )
        job = run_job(server, alice, shell(attack))
        chat = chat_turn(server, alice, shell(environ_probe(list(server.pids.values()))))
        said = "\n".join(results(job) + results(chat))
        assert "probe-done" in said, said
        assert job[-1]["type"] == "final_result"
        for secret in (*server_secrets(server), *BOB_SECRETS, BOB_CHAT, ETC_SECRET):
            assert secret not in said
        assert "SQLite format" not in said and "LEAK" not in said
        assert "REACHED" not in said and "unreachable 5432" in said
        assert "unreachable 80" in said, "no route out either"
        for path in planted:
            assert not path.exists(), f"wrote {path}"


class _Redirector(BaseHTTPRequestHandler):
    targets: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        index = int(self.path.strip("/") or 0)
        self.send_response(302)
        self.send_header("Location", self.targets[index])
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def redirector(targets: list[str]) -> Iterator[str]:
    """An HTTP server on 127.0.0.2 whose /N redirects to ``targets[N]``."""
    _Redirector.targets = targets
    server = ThreadingHTTPServer(("127.0.0.2", 0), _Redirector)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def hosts_alias() -> Iterator[str | None]:
    """A name added to /etc/hosts for loopback, removed afterwards."""
    name = f"crewboard-hostile-{uuid.uuid4().hex[:6]}.test"
    if not os.access("/etc/hosts", os.W_OK):
        yield None
        return
    line = f"127.0.0.1 {name}\n"
    with open("/etc/hosts", "a") as hosts:
        hosts.write(line)
    try:
        yield name
    finally:
        hosts = Path("/etc/hosts")
        kept = [entry for entry in hosts.read_text().splitlines(True) if entry != line]
        hosts.write_text("".join(kept))


def test_http_get_reaches_no_internal_address_directly_or_by_redirect(
    tmp_path: Path, listener: int, hosts_alias: str | None
) -> None:
    with running_server(tmp_path, CREWBOARD_HTTP_ALLOW="127.0.0.2/32") as server:
        port = urlsplit(server.url).port
        targets = [
            f"http://127.0.0.1:{listener}/",
            f"http://127.1:{listener}/",
            f"http://2130706433:{listener}/",
            f"http://localhost:{port}/api/models",
            f"http://[::1]:{port}/",
            f"http://[::ffff:127.0.0.1]:{listener}/",
            f"http://[64:ff9b::7f00:1]:{listener}/",
            "http://[fe80::1]/",
            "http://[fc00::1]/",
            "http://10.0.0.1/",
            "http://192.168.1.1/",
            "http://172.16.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
        ]
        if hosts_alias:
            targets.append(f"http://{hosts_alias}:{listener}/")
        alice = server.client("alice@example.test")
        with redirector(targets) as first_hop:
            lines = [f"/tool http_get {json.dumps({'url': url})}" for url in targets]
            lines += [
                f"/tool http_get {json.dumps({'url': f'{first_hop}/{i}'})}"
                for i in range(len(targets))
            ]
            records = run_job(server, alice, "\n".join(lines), agent="researcher")
        said = results(records)
        assert len(said) == 2 * len(targets)
        for url, result in zip(targets * 2, said, strict=True):
            assert result.startswith(("error: refused", "error: cannot resolve")), (url, result)
        # The first hop was allowed: each redirect was refused at its target.
        assert not any("127.0.0.2" in result for result in said[len(targets) :])


def logged(server: Server, text: str) -> list[str]:
    """The lines saying ``text``, once the web and the supervisor (each once
    at start) have both said it."""

    def said() -> list[str]:
        return [line for line in server.proc.output().splitlines() if text in line]

    wait_until(lambda: len(said()) >= 2, timeout_s=20, what=f"two lines saying {text!r}")
    time.sleep(0.2)
    lines = said()
    assert len(lines) == 2, server.proc.output()
    return lines


@pytest.mark.parametrize("why", ["missing", "broken"])
def test_without_bubblewrap_the_shell_refuses_each_call(tmp_path: Path, why: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if why == "broken":
        fake = bin_dir / "bwrap"
        fake.write_text(
            "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
        )
        fake.chmod(0o755)
    with running_server(tmp_path, PATH=str(bin_dir)) as server:
        warnings = logged(server, UNAVAILABLE)
        if why == "broken":
            assert "No permissions to create new namespace" in warnings[0]
        alice = server.client("alice@example.test")
        records = run_job(server, alice, shell("echo ran > ran.txt; echo RAN"))
        (said,) = results(records)
        assert said.startswith("error: " + UNAVAILABLE) and "RAN" not in said
        assert not list(server.home.glob("workspaces/*/ran.txt"))


def test_an_allowed_unsandboxed_shell_runs_with_a_warning_and_no_secrets(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    with running_server(
        tmp_path, PATH=str(bin_dir), CREWBOARD_ALLOW_UNSANDBOXED_SHELL="1"
    ) as server:
        logged(server, "WITHOUT a sandbox")
        alice = server.client("alice@example.test")
        pids = [*server.pids.values(), server.proc.popen.pid]
        # Only these: other processes of this user on the host are none of its business.
        probe = environ_probe(pids, every_process=False)
        job = run_job(server, alice, shell("echo RAN; " + probe))
        chat = chat_turn(server, alice, shell(probe))
        said = "\n".join(results(job) + results(chat))
        assert "RAN" in said and "probe-done" in said, said
        for secret in (KEY, ADMIN_PASSWORD):
            assert secret not in said
        assert "LEAK" not in said
        for pid in pids:
            assert f"closed {pid} environ" in said, said


def test_serve_hands_no_secret_to_its_children_environment(tmp_path: Path) -> None:
    """Read as the server's own user with every capability: the web and the
    supervisor started without the key or the password in their environment."""
    need(os.geteuid() == 0, "reading another process's closed environ needs root here")
    with running_server(tmp_path) as server:
        for pid in server.pids.values():
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert KEY.encode() not in environ and ADMIN_PASSWORD.encode() not in environ
        models = server.client("alice@example.test").get("/api/models").json()
        assert any(m["provider"] == "openai" for m in models), "the web still has the key"
