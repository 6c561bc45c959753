"""A hostile tenant against the file tools, through the product: a signed-in
ordinary user steers real runs (chat turns and a job, on the offline model's
``/tool`` directives) at the real data home, its board.db, secret_key,
another user's chat log, workspace and artifacts, and the server's own
virtualenv. Every attempt ends in a tool error, and no secret byte reaches a
tool result, the run's log or an API answer."""

from __future__ import annotations

import json
import os
import secrets
import sysconfig
from pathlib import Path
from typing import Any

import httpx
import trio

from crewboard.config import Config
from crewboard.home import Home
from tests.conftest import Account, signed_in
from tests.support.chat import create_session, send
from tests.support.sse_client import Frame
from tests.support.supervisor import supervising

BOB_SAYS = "BOB-CHAT-" + secrets.token_hex(6)
BOB_NOTES = "BOB-WORKSPACE-" + secrets.token_hex(6)
BOB_ARTIFACT = "BOB-ARTIFACT-" + secrets.token_hex(6)


def directives(calls: list[tuple[str, dict[str, Any]]]) -> str:
    """Offline-model lines calling each tool in one step (parallel calls)."""
    return "\n".join(f"/tool {name} {json.dumps(args)}" for name, args in calls)


def tool_ends(frames: list[Frame]) -> list[dict[str, Any]]:
    return [f.data for f in frames if f.type == "chunk" and f.data.get("type") == "agent_tool_end"]


async def bob_leaves_traces(server: str, bob: Account, home: Home) -> int:
    """Bob chats, keeps notes in his workspace and saves an artifact."""
    async with signed_in(server, bob) as as_bob:
        session = await create_session(as_bob, agent="writer")
        message = directives(
            [
                ("write_file", {"path": "notes.txt", "content": BOB_NOTES}),
                ("save_artifact", {"name": "bob.md", "content": BOB_ARTIFACT}),
            ]
        )
        frames = await send(as_bob, session["id"], f"{BOB_SAYS}\n{message}")
    assert frames[-1].type == "done", frames[-1]
    ident = home.chat_workspace_id(session["id"])
    assert (home.workspace(ident) / "notes.txt").read_text() == BOB_NOTES
    assert BOB_SAYS in home.chat_log(session["id"]).read_text()
    return int(session["id"])


def targets(home: Home, workspace: Path, bob_session: int) -> dict[str, Path]:
    """What an attacker is after, by name."""
    bob = home.chat_workspace_id(bob_session)
    return {
        "board": home.board_db,
        "key": home.root / "secret_key",
        "bob_log": home.chat_log(bob_session),
        "bob_notes": home.workspace(bob) / "notes.txt",
        "bob_artifact": home.artifact_dir(bob) / "bob.md",
        "environ": Path("/proc/self/environ"),
        "site": Path(sysconfig.get_paths()["purelib"]),
    }


def attack(home: Home, workspace: Path, bob_session: int, pth: str) -> str:
    """Every file-tool vector at every target: relative climbs, absolute
    paths, encoded and look-alike forms, NUL bytes; reads, listings, writes
    and artifact names."""
    calls: list[tuple[str, dict[str, Any]]] = []
    for name, target in targets(home, workspace, bob_session).items():
        up = os.path.relpath(target, workspace)
        encoded = up.replace("..", "%2e%2e").replace("/", "%2f")
        forms = [up, str(target), "./" + up, encoded, up.replace("..", "\uff0e\uff0e"), up + "\0"]
        if name == "site":
            for form in (f"{up}/{pth}", f"{target}/{pth}", f"{encoded}%2f{pth}"):
                calls.append(("write_file", {"path": form, "content": "import os"}))
            forms = [up, str(target)]
        for form in forms:
            tool = "list_files" if name == "site" else "read_file"
            calls.append((tool, {"path": form}))
        calls.append(("write_file", {"path": up, "content": "pwned", "append": True}))
        calls.append(("write_file", {"path": str(target), "content": "pwned"}))
    for path in ("..", "../..", "/", str(home.root), "../../logs/chat", "a\0b"):
        calls.append(("list_files", {"path": path}))
    for name in ("../../secret_key", f"../../../{pth}", "/etc/passwd", "..", "a\0b"):
        calls.append(("save_artifact", {"name": name, "content": "pwned"}))
    return directives(calls)


def assert_refused_or_literal(ends: list[dict[str, Any]], workspace: Path) -> None:
    """Every call was refused, but for writes to an encoded path, which made a
    file of that very name in the workspace (``%2f`` is no separator)."""
    for end in ends:
        if end.get("isError"):
            assert end["result"].startswith("error: "), end
            continue
        assert end["toolName"] == "write_file", end
        written = end["result"].rsplit(" to ", 1)[1]
        assert "/" not in written and (workspace / written).is_file(), end


def secret_values(home: Home) -> list[str]:
    return [
        (home.root / "secret_key").read_text().strip(),
        "$argon2",  # every password hash in board.db starts so
        BOB_SAYS,
        BOB_NOTES,
        BOB_ARTIFACT,
        "PATH=",  # a line of any environ
    ]


def unchanged(home: Home, before: dict[str, bytes]) -> bool:
    return all(Path(p).read_bytes() == data for p, data in before.items())


async def test_a_chat_turn_reaches_nothing_outside_its_workspace(
    server: str, config: Config, home: Home, alice: Account, bob: Account
) -> None:
    bob_session = await bob_leaves_traces(server, bob, home)
    pth = f"crewboard-hostile-{secrets.token_hex(4)}.pth"
    site = Path(sysconfig.get_paths()["purelib"])
    kept = [home.root / "secret_key", home.chat_log(bob_session)]
    kept += [t for t in home.workspace(home.chat_workspace_id(bob_session)).iterdir()]
    before = {str(p): p.read_bytes() for p in kept}
    try:
        async with signed_in(server, alice) as as_alice:
            session = await create_session(as_alice, agent="writer")
            workspace = home.workspace(home.chat_workspace_id(session["id"]))
            message = attack(home, workspace, bob_session, pth)
            frames = await send(as_alice, session["id"], message)
            replayed = (await as_alice.get(f"/api/session/replay/{session['id']}")).text
            listing = (await as_alice.get("/api/session/list")).text
    finally:
        planted = site / pth
        if planted.exists():
            planted.unlink()
            raise AssertionError(f"a .pth file was written into {site}")

    ends = tool_ends(frames)
    assert len(ends) == message.count("/tool "), "every call was answered"
    assert_refused_or_literal(ends, workspace)
    answers = "\n".join([json.dumps([f.data for f in frames]), replayed, listing])
    log = home.chat_log(session["id"]).read_text()
    for secret in secret_values(home):
        assert secret not in answers and secret not in log, secret
    assert unchanged(home, before)
    assert not list(site.glob("crewboard-hostile-*.pth"))
    assert frames[-1].type == "done"


async def test_a_job_reaches_nothing_outside_its_workspace(
    server: str, config: Config, home: Home, alice: Account, bob: Account
) -> None:
    bob_session = await bob_leaves_traces(server, bob, home)
    pth = f"crewboard-hostile-{secrets.token_hex(4)}.pth"
    site = Path(sysconfig.get_paths()["purelib"])
    secret_key = (home.root / "secret_key").read_bytes()
    async with signed_in(server, alice) as as_alice:
        # The workspace of the job's first run: runs are numbered from 1.
        prompt = attack(home, home.workspace(1), bob_session, pth)
        created = await as_alice.post(
            "/api/jobs", json={"templateId": "ask", "inputs": {"question": prompt}}
        )
        assert created.status_code == 201, created.text
        (job_id,) = created.json()["jobIds"]
        try:
            async with supervising(config):
                job = await wait_for_job(as_alice, job_id)
        finally:
            for planted in site.glob("crewboard-hostile-*.pth"):
                planted.unlink()
                raise AssertionError(f"a .pth file was written into {site}")
        answers = json.dumps(job) + (await as_alice.get(f"/api/jobs/{job_id}")).text
        answers += (await as_alice.get("/api/jobs")).text
    assert job["status"] == "done", job
    assert (home.run_log(1)).exists(), "the attack's paths were made for run 1's workspace"
    log = "\n".join(p.read_text() for p in (home.root / "logs" / "runs").glob("*.jsonl"))
    records = [json.loads(line) for line in log.splitlines()]
    ends = [r for r in records if r["type"] == "agent_tool_end"]
    assert len(ends) == prompt.count("/tool ")
    assert_refused_or_literal(ends, home.workspace(1))
    for secret in secret_values(home):
        assert secret not in answers and secret not in log, secret
    assert (home.root / "secret_key").read_bytes() == secret_key


async def wait_for_job(client: httpx.AsyncClient, job_id: int) -> dict[str, Any]:
    with trio.fail_after(60):
        while True:
            job: dict[str, Any] = (await client.get(f"/api/jobs/{job_id}")).json()["job"]
            if job["status"] in ("done", "failed", "blocked"):
                return job
            await trio.sleep(0.2)
