"""Chat sessions over HTTP, through the live server, with real runner
subprocesses on the offline model (and, for the wire path, on a fake
OpenAI-compatible endpoint)."""

from __future__ import annotations

import dataclasses
import os
import signal
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
import trio

from crewboard.board import chats
from crewboard.config import ProviderEndpoint
from crewboard.forkserver import TEMPLATE_MODULE
from crewboard.sessionlog import read_records
from crewboard.web import sse
from tests.conftest import client_for, make_config, signed_in
from tests.support.chat import (
    create_session,
    next_chunk,
    open_turn,
    replay,
    rest_of,
    runner_pids,
    send,
    stream,
    wait_for_runner,
)
from tests.support.fake_openai import Reply, fake_openai
from tests.support.sse_client import Frame
from tests.support.supervisor import children_running
from tests.support.waits import wait_for

# It opens boards outside the board fixtures (make_config, crewboard commands).
pytestmark = pytest.mark.board


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(html: str) -> list[tuple[str, dict[str, str]]]:
    """Every element of ``html`` as (tag, attributes), as a browser would see them."""
    parser = _Elements()
    parser.feed(html)
    return parser.elements


def html_text(html: str) -> str:
    parser = _Elements()
    parser.feed(html)
    return "".join(parser.text)


def chunk_types(frames: list[Frame]) -> list[str]:
    return [f.data["type"] for f in frames if f.type == "chunk"]


def assert_ids_ascend(frames: list[Frame]) -> None:
    ids = [int(f.id or 0) for f in frames]
    assert all(ids), ids
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids


# --- a turn -------------------------------------------------------------------


async def test_a_turn_streams_its_steps_then_done_with_html(as_alice, home):
    session = await create_session(as_alice, agent="triage", sessionName="handoff")
    assert session["modelSpec"] == "offline:scripted" and session["live"] is False
    message = (
        "/handoff writer\n"
        '/tool write_file {"path": "notes.md", "content": "draft"}\n'
        "Write **bold** words"
    )
    async with open_turn(as_alice, session["id"], message) as raw:
        assert raw.headers["content-type"].startswith("text/event-stream")
        assert raw.headers["cache-control"].startswith("no-cache")
        assert raw.headers["x-accel-buffering"] == "no"
        frames = await rest_of(raw)

    assert [f.type for f in frames[:-1]] == ["chunk"] * (len(frames) - 1)
    assert_ids_ascend(frames)
    types = chunk_types(frames)
    assert types[:4] == ["agent_start", "handoff", "agent_end", "agent_start"]
    assert types[4:6] == ["agent_tool_start", "agent_tool_end"]
    assert "text" in types and types[-1] == "agent_end"
    handoff = frames[1].data
    assert (handoff["agentName"], handoff["toAgentName"]) == ("triage", "writer")
    tool_end = next(
        f.data for f in frames if f.type == "chunk" and f.data["type"] == "agent_tool_end"
    )
    assert tool_end["toolName"] == "write_file" and not tool_end.get("isError")

    done = frames[-1]
    assert done.type == "done"
    assert done.data["type"] == "final_result" and done.data["agentName"] == "writer"
    assert "<strong>bold</strong>" in done.data["html"]
    assert done.data["session"]["id"] == session["id"]
    assert done.data["session"]["live"] is False
    assert done.data["session"]["updatedAt"] >= session["updatedAt"]
    # The tool ran in the session's own workspace.
    assert (home.workspace(f"chat-{session['id']}") / "notes.md").read_text() == "draft"


async def test_the_next_message_continues_the_same_log(as_alice, home):
    session = await create_session(as_alice)
    first = await send(as_alice, session["id"], "one")
    second = await send(as_alice, session["id"], "two")
    assert first[-1].type == second[-1].type == "done"
    assert int(second[0].id) > int(first[-1].id)
    records = read_records(home.chat_log(session["id"]))
    assert [r["text"] for r in records if r["type"] == "user_message"] == ["one", "two"]


async def test_a_provider_failure_ends_the_turn_with_an_error_frame(as_alice):
    session = await create_session(as_alice)
    frames = await send(as_alice, session["id"], "/fail the model is down")
    assert frames[-1].type == "error"
    assert "the model is down" in frames[-1].data["message"]
    # The session takes the next message.
    assert (await send(as_alice, session["id"], "again"))[-1].type == "done"


async def test_a_turn_the_agent_blocks_ends_with_its_reason(as_alice):
    session = await create_session(as_alice, agent="triage", sessionName="blocked")
    frames = await send(as_alice, session["id"], "/block I need the *budget* first")
    done = frames[-1]
    assert done.type == "done" and done.data["type"] == "blocked"
    assert "<em>budget</em>" in done.data["html"]
    replayed = await replay(as_alice, "blocked")
    assert replayed[-1].type == "final_result" and replayed[-1].data["type"] == "blocked"
    # The next turn is not handed the blocked one as context, and runs.
    assert (await send(as_alice, session["id"], "hello"))[-1].type == "done"


async def test_model_output_is_neutralised_in_html(as_alice):
    session = await create_session(as_alice)
    payloads = [
        "<script>alert('x')</script>",
        "<img src=x onerror=alert(1)>",
        "[click](javascript:alert(1))",
        '<a href="javascript:alert(2)">a</a>',
        "![pixel](https://tracker.example/p.png)",
        "<iframe src=https://evil.example></iframe>",
    ]
    frames = await send(as_alice, session["id"], "\n\n".join(payloads))
    done = frames[-1]
    assert done.type == "done"
    elements = parse_html(done.data["html"])
    assert {tag for tag, _ in elements} <= {"p", "blockquote", "a"}
    for tag, attrs in elements:
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        if tag == "a":
            assert attrs["href"].startswith("https://"), attrs
            assert attrs["rel"] == "noopener nofollow"
    # The payloads survive as text a reader can see; the image became a link.
    assert "<script>alert('x')</script>" in html_text(done.data["html"])
    assert ("a", {"href": "https://tracker.example/p.png", "rel": "noopener nofollow"}) in elements


# --- the OpenAI wire path -----------------------------------------------------


class TestOpenAICompatibleProvider:
    @pytest.fixture
    def fake(self):
        with fake_openai() as fake:
            yield fake

    @pytest.fixture
    def config(self, tmp_path, fake):
        return make_config(
            tmp_path / "home", providers={"fake": ProviderEndpoint("fake", fake.base_url)}
        )

    async def test_a_turn_on_an_openai_compatible_endpoint(self, as_alice, fake):
        fake.script(
            Reply.tools([("write_file", '{"path": "a.txt", "content": "x"}')]),
            Reply.text("Saved it. **Done.**"),
        )
        session = await create_session(as_alice, modelSpec="fake:fake-model")
        assert session["modelSpec"] == "fake:fake-model"
        frames = await send(as_alice, session["id"], "save a file")
        assert chunk_types(frames)[:3] == ["agent_start", "agent_tool_start", "agent_tool_end"]
        done = frames[-1]
        assert done.type == "done" and done.data["text"] == "Saved it. **Done.**"
        assert "<strong>Done.</strong>" in done.data["html"]
        assert fake.requests[0]["body"]["model"] == "fake-model"
        assert fake.requests[0]["body"]["stream"] is True

    async def test_reopening_by_name_gives_the_model_the_earlier_turns(self, as_alice, fake):
        fake.script(Reply.text("Paris."), Reply.text("About two million."))
        first = await create_session(as_alice, modelSpec="fake:fake-model", sessionName="geo")
        await send(as_alice, first["id"], "Capital of France?")
        response = await as_alice.post(
            "/api/session/create", json={"agent": "assistant", "sessionName": "geo"}
        )
        assert response.status_code == 200
        again = response.json()
        assert again["id"] == first["id"] and again["modelSpec"] == "fake:fake-model"
        await send(as_alice, again["id"], "How many people live there?")
        conversation = [
            (m["role"], m["content"])
            for m in fake.requests[-1]["body"]["messages"]
            if m["role"] != "system"
        ]
        assert conversation == [
            ("user", "Capital of France?"),
            ("assistant", "Paris."),
            ("user", "How many people live there?"),
        ]

    async def test_an_endpoint_error_ends_the_turn_with_an_error_frame(self, as_alice, fake):
        fake.script(Reply.error(400, "model not found"))
        session = await create_session(as_alice, modelSpec="fake:missing")
        frames = await send(as_alice, session["id"], "hi")
        assert frames[-1].type == "error" and "model not found" in frames[-1].data["message"]


async def test_reopening_by_name_continues_the_history_on_the_offline_model(as_alice, home):
    first = await create_session(as_alice, sessionName="diary")
    await send(as_alice, first["id"], "Remember the number 42.")
    again = await create_session(as_alice, sessionName="diary")
    assert again["id"] == first["id"]
    second = await send(as_alice, again["id"], "Which number?")
    fresh = await create_session(as_alice, sessionName="fresh")
    alone = await send(as_alice, fresh["id"], "Which number?")
    # The second runner was handed the first turn: it read more than a runner
    # asked the same question in a new session.
    assert second[-1].data["usage"]["inputTokens"] > alone[-1].data["usage"]["inputTokens"]
    frames = await replay(as_alice, "diary")
    assert [f.data["text"] for f in frames if f.type == "user_message"] == [
        "Remember the number 42.",
        "Which number?",
    ]


# --- running turns: conflicts, kills, stops -----------------------------------


async def test_turns_fork_from_the_web_process_template_and_go_on_spawned_without_it(as_alice):
    session = await create_session(as_alice)
    (template,) = children_running(os.getpid(), TEMPLATE_MODULE)
    async with open_turn(as_alice, session["id"], "/sleep 1\nforked") as raw:
        await next_chunk(raw, "agent_start")
        assert await wait_for_runner() in children_running(template, TEMPLATE_MODULE)
        assert (await rest_of(raw))[-1].type == "done"
    os.kill(template, signal.SIGKILL)
    async with open_turn(as_alice, session["id"], "/sleep 1\nspawned") as raw:
        await next_chunk(raw, "agent_start")
        assert await wait_for_runner() in children_running(os.getpid(), "crewboard.runner")
        assert (await rest_of(raw))[-1].type == "done"


async def test_a_runner_killed_with_sigkill_ends_the_turn_with_an_error(as_alice, home):
    session = await create_session(as_alice)
    async with open_turn(as_alice, session["id"], "/sleep 30\nslow") as raw:
        await next_chunk(raw, "agent_start")
        pid = await wait_for_runner()
        os.kill(pid, signal.SIGKILL)
        rest = await rest_of(raw)
    assert rest[-1].type == "error"
    assert "SIGKILL" in rest[-1].data["message"]
    assert runner_pids() == []
    records = read_records(home.chat_log(session["id"]))
    assert records[-1]["type"] == "error"
    # The session is idle again and takes the next message.
    got = await as_alice.get(f"/api/session/get/{session['id']}")
    assert got.json()["live"] is False
    assert (await send(as_alice, session["id"], "still there?"))[-1].type == "done"


async def test_a_second_message_while_a_turn_runs_is_409_and_closing_stops_it(as_alice, home):
    session = await create_session(as_alice)
    url = f"/api/session/newUserMessage/{session['id']}"
    async with open_turn(as_alice, session["id"], "/sleep 30\nslow") as raw:
        await next_chunk(raw, "agent_start")
        busy = await as_alice.post(url, json={"message": "me too"})
        assert busy.status_code == 409
        assert busy.json()["error"]["code"] == "conflict"
        assert (await as_alice.get(f"/api/session/get/{session['id']}")).json()["live"]
        closed = await as_alice.post(f"/api/session/delete/{session['id']}")
        assert closed.status_code == 204
        rest = await rest_of(raw)
    assert rest[-1].type == "error"
    assert runner_pids() == []
    last = read_records(home.chat_log(session["id"]))[-1]
    assert last["type"] == "error"
    assert last.get("cancelled") is True or "stopped" in last["message"]
    assert (await as_alice.get(f"/api/session/get/{session['id']}")).json()["live"] is False
    # Closing a session that runs nothing is fine, and the history stays.
    assert (await as_alice.post(f"/api/session/delete/{session['id']}")).status_code == 204
    assert [f.type for f in await replay(as_alice, session["sessionName"])][-1] == "error"


async def test_a_turn_keeps_running_when_its_client_goes_away(as_alice):
    session = await create_session(as_alice)
    async with open_turn(as_alice, session["id"], "/sleep 0.5\nstill here") as raw:
        await next_chunk(raw, "agent_start")

    async def turn_over() -> bool:
        return not (await as_alice.get(f"/api/session/get/{session['id']}")).json()["live"]

    # The client hung up; the turn finishes anyway and is in the log.
    await wait_for(turn_over, 30, "the turn to finish", every_s=0.05)
    frames = await replay(as_alice, session["sessionName"])
    assert frames[-1].type == "final_result"
    assert "still here" in frames[-1].data["text"]


async def test_quiet_streams_are_kept_alive_with_pings(as_alice, monkeypatch):
    monkeypatch.setattr(sse, "PING_S", 0.2)
    session = await create_session(as_alice)
    async with open_turn(as_alice, session["id"], "/sleep 2\nslowly") as raw:
        # Two pings while the agent sleeps, then the turn goes on to its end.
        frames = await raw.frames_until_pings(2)
        frames += await rest_of(raw)
    assert frames[-1].type == "done"
    assert set(raw.pings) == {": ping"}


async def test_shutting_down_stops_running_turns_within_five_seconds(config, home, alice):
    from crewboard.web.chat import SHUTDOWN_GRACE_S
    from crewboard.web.server import serve_web

    # Five seconds by construction: on shutdown a turn's runner gets SIGTERM
    # and at most SHUTDOWN_GRACE_S before a SIGKILL. What is checked is that
    # the turn is recorded as stopped by the runner itself, on the SIGTERM.
    assert SHUTDOWN_GRACE_S < 5
    config = dataclasses.replace(config, grace_s=60.0)
    stop = trio.Event()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                lambda task_status: serve_web(config, shutdown=stop, task_status=task_status)
            )
            async with signed_in(binds[0], alice) as client:
                session = await create_session(client)
                async with open_turn(client, session["id"], "/sleep 600\nslow") as raw:
                    await next_chunk(raw, "agent_start")
                    await wait_for_runner()
                    stop.set()
                    await rest_of(raw)
    assert runner_pids() == []
    last = read_records(home.chat_log(session["id"]))[-1]
    assert last["type"] == "error" and last.get("cancelled") is True, last


# --- replay -------------------------------------------------------------------


async def test_replay_reframes_every_turn(as_alice):
    session = await create_session(as_alice, sessionName="two turns")
    await send(as_alice, session["id"], "first *one*")
    await send(as_alice, session["id"], '/tool read_file {"path": "nope.txt"}\nsecond')
    frames = await replay(as_alice, "two turns")
    assert_ids_ascend(frames)
    kinds = [f.type for f in frames]
    assert kinds.count("user_message") == 2 and kinds.count("final_result") == 2
    first_end = kinds.index("final_result")
    assert kinds[0] == "user_message" and kinds[first_end + 1] == "user_message"
    assert set(kinds[1:first_end]) == {"chunk"}
    assert frames[0].data["text"] == "first *one*"
    assert "<em>one</em>" in frames[first_end].data["html"]
    second = frames[first_end + 1 :]
    assert "agent_tool_end" in chunk_types(second)
    assert kinds[-1] == "final_result" and "html" in frames[-1].data


async def test_replay_resumes_after_last_event_id(as_alice):
    session = await create_session(as_alice, sessionName="resume")
    await send(as_alice, session["id"], "one")
    await send(as_alice, session["id"], "two")
    everything = await replay(as_alice, "resume")
    end_of_first = next(int(f.id) for f in everything if f.type == "final_result")
    rest = await replay(as_alice, "resume", last_event_id=end_of_first)
    assert rest == [f for f in everything if int(f.id) > end_of_first]
    assert rest[0].type == "user_message" and rest[0].data["text"] == "two"
    assert await replay(as_alice, "resume", last_event_id=everything[-1].id) == []


async def test_replay_follows_a_running_turn_to_its_end(as_alice):
    session = await create_session(as_alice, sessionName="live one")
    await send(as_alice, session["id"], "earlier")
    async with open_turn(as_alice, session["id"], "/sleep 1\nlater") as raw:
        await next_chunk(raw, "agent_start")
        frames = await replay(as_alice, "live one")
        assert (await rest_of(raw))[-1].type == "done"
    assert [f.type for f in frames].count("user_message") == 2
    assert frames[-1].type == "final_result" and "later" in frames[-1].data["text"]
    assert_ids_ascend(frames)


async def test_replay_of_an_unknown_name_is_404(as_alice):
    response, _ = await stream(as_alice, "GET", "/api/session/replay/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- create, names, get, delete -----------------------------------------------


async def test_create_defaults_and_validation(as_alice):
    made = await as_alice.post("/api/session/create", json={"agent": "writer"})
    assert made.status_code == 201
    body = made.json()
    assert set(body) == {
        "id",
        "sessionName",
        "agent",
        "modelSpec",
        "createdAt",
        "updatedAt",
        "live",
    }
    assert body["agent"] == "writer" and body["modelSpec"] == "offline:scripted"
    assert body["sessionName"].startswith("writer ") and body["live"] is False
    assert body["createdAt"].endswith("Z")

    for bad, field in [
        ({"agent": "no-such-agent"}, "agent"),
        ({"agent": "assistant", "modelSpec": "nonsense"}, "modelSpec"),
        ({"agent": "assistant", "modelSpec": "nobody:model"}, "modelSpec"),
        ({"agent": "assistant", "modelSpec": "offline:other"}, "modelSpec"),
        ({"agent": "assistant", "modelSpec": "openai:gpt-4o"}, "modelSpec"),  # no key set
        ({"agent": "assistant", "extra": 1}, "extra"),
        ({}, "agent"),
        ({"agent": 7}, "agent"),
    ]:
        response = await as_alice.post("/api/session/create", json=bad)
        assert response.status_code == 422, (bad, response.text)
        assert field in response.json()["error"]["details"]["fields"], bad

    for raw in (b"not json", b"[1, 2]", b""):
        response = await as_alice.post(
            "/api/session/create", content=raw, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, raw
        assert response.json()["error"]["code"] == "bad_request"


async def test_names_lists_own_sessions_most_recent_first(as_alice, as_bob):
    a = await create_session(as_alice, sessionName="a")
    b = await create_session(as_alice, sessionName="b")
    await create_session(as_bob, sessionName="bobs")
    names = (await as_alice.get("/api/session/names")).json()
    assert [n["sessionName"] for n in names] == ["b", "a"]
    assert set(names[0]) == {"sessionName", "id", "updatedAt"}
    await send(as_alice, a["id"], "bump")
    names = (await as_alice.get("/api/session/names")).json()
    assert [n["id"] for n in names] == [a["id"], b["id"]]


async def test_delete_by_name_removes_the_row_the_history_and_the_log(as_alice, home):
    session = await create_session(as_alice, sessionName="gone soon")
    await send(as_alice, session["id"], '/tool write_file {"path": "f.txt", "content": "x"}')
    log_path = home.chat_log(session["id"])
    assert log_path.exists()
    async with open_turn(as_alice, session["id"], "/sleep 30\nbusy") as raw:
        await next_chunk(raw, "agent_start")
        busy = await as_alice.delete("/api/session/byName/gone soon")
        assert busy.status_code == 409
        await as_alice.post(f"/api/session/delete/{session['id']}")
        assert (await rest_of(raw))[-1].type == "error"
    response = await as_alice.delete("/api/session/byName/gone soon")
    assert response.status_code == 204
    assert not log_path.exists()
    assert not home.workspace(f"chat-{session['id']}").exists()
    assert (await as_alice.get(f"/api/session/get/{session['id']}")).status_code == 404
    assert (await as_alice.get("/api/session/names")).json() == []
    assert (await as_alice.delete("/api/session/byName/gone soon")).status_code == 404
    # A new session of that name starts with no history.
    fresh = await create_session(as_alice, sessionName="gone soon")
    assert await replay(as_alice, "gone soon") == []
    assert fresh["createdAt"] > session["createdAt"]


async def test_a_new_session_never_inherits_a_removed_sessions_files(as_alice, home):
    old = await create_session(as_alice, sessionName="old")
    await send(as_alice, old["id"], '/tool write_file {"path": "secret.txt", "content": "x"}')
    # The row goes without its files (as when an account is purged): the id
    # may be handed out again.
    chats.delete_session(old["id"])
    assert home.chat_log(old["id"]).exists()
    new = await create_session(as_alice, sessionName="new")
    if new["id"] == old["id"]:
        assert not home.chat_log(new["id"]).exists()
        assert not (home.workspace(f"chat-{new['id']}") / "secret.txt").exists()
    assert await replay(as_alice, "new") == []


# --- hostile input ------------------------------------------------------------

HOSTILE_NAMES = [
    "a/b",
    "..",
    "../../etc/passwd",
    "a\\b",
    "nul\x00byte",
    "line\nbreak",
    "bell\x07",
    "\u202eevil",
    "x" * 101,
    "",
    "  ",
    " padded ",
]


HOSTILE_PATHS = [
    "..",
    "a%2Fb",
    "..%2F..%2Fboard.db",
    "a%5Cb",
    "nul%00byte",
    "%E2%80%AEevil",
    "x" * 101,
    "%0A",
]


async def test_hostile_session_names_are_refused(as_alice):
    for name in HOSTILE_NAMES:
        response = await as_alice.post(
            "/api/session/create", json={"agent": "assistant", "sessionName": name}
        )
        assert response.status_code == 422, (name, response.text)
        assert "sessionName" in response.json()["error"]["details"]["fields"], name
    assert (await as_alice.get("/api/session/names")).json() == []


async def test_hostile_names_in_paths_are_refused(as_alice):
    await create_session(as_alice, sessionName="kept")
    for path in HOSTILE_PATHS:
        for method, url in (
            ("GET", f"/api/session/replay/{path}"),
            ("DELETE", f"/api/session/byName/{path}"),
        ):
            response = await as_alice.request(method, url)
            assert response.status_code in (400, 404, 422), (url, response.status_code)
            assert response.headers["content-type"].startswith("application/json"), url
            assert "error" in response.json()
    names = (await as_alice.get("/api/session/names")).json()
    assert [n["sessionName"] for n in names] == ["kept"]


async def test_names_that_look_odd_but_are_fine_work_everywhere(as_alice):
    name = "Plan: Q3 (draft) — ünïcode ✓ 👩‍💻 #1?"
    session = await create_session(as_alice, sessionName=name)
    assert session["sessionName"] == name
    await send(as_alice, session["id"], "hi")
    frames = await replay(as_alice, quote(name, safe=""))
    assert frames[0].type == "user_message"
    response = await as_alice.delete("/api/session/byName/" + quote(name, safe=""))
    assert response.status_code == 204


async def test_hostile_message_bodies_are_refused(as_alice):
    session = await create_session(as_alice)
    url = f"/api/session/newUserMessage/{session['id']}"
    for body, status in [
        ({"message": ""}, 422),
        ({"message": "   \n "}, 422),
        ({"message": 5}, 422),
        ({"message": None}, 422),
        ({"message": "x" * 100_001}, 422),
        ({"message": "hi", "agent": "coder"}, 422),
        ({"message": "nul\x00"}, 422),
        ({}, 422),
    ]:
        response = await as_alice.post(url, json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["code"] == "validation_failed"
    for raw in (b"{", b'"message"', b"[]"):
        response = await as_alice.post(
            url, content=raw, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
    assert (await as_alice.get("/api/session/names")).json()[0]["id"] == session["id"]
    assert await replay(as_alice, session["sessionName"]) == []


async def test_unknown_session_ids(as_alice):
    assert (await as_alice.get("/api/session/get/999999")).status_code == 404
    assert (await as_alice.post("/api/session/delete/999999")).status_code == 404
    response = await as_alice.post("/api/session/newUserMessage/999999", json={"message": "x"})
    assert response.status_code == 404
    assert (await as_alice.get("/api/session/get/abc")).status_code == 404
    assert (await as_alice.get("/api/session/get/" + "9" * 30)).status_code == 404


# --- who may do what ----------------------------------------------------------


async def test_users_cannot_see_each_others_sessions(as_alice, as_bob, as_admin):
    mine = await create_session(as_alice, sessionName="private")
    await send(as_alice, mine["id"], "secret plans")
    sid = mine["id"]

    # Bob: every id route says "no such session"; the name routes look at his own.
    assert (await as_bob.get(f"/api/session/get/{sid}")).status_code == 404
    assert (await as_bob.post(f"/api/session/delete/{sid}")).status_code == 404
    response = await as_bob.post(f"/api/session/newUserMessage/{sid}", json={"message": "hi"})
    assert response.status_code == 404
    assert (await as_bob.get("/api/session/names")).json() == []
    response, _ = await stream(as_bob, "GET", "/api/session/replay/private")
    assert response.status_code == 404
    assert (await as_bob.delete("/api/session/byName/private")).status_code == 404
    # His own session of the same name is a different session.
    his = await create_session(as_bob, sessionName="private")
    assert his["id"] != sid
    assert await replay(as_bob, "private") == []

    # An admin passes the id routes, while the name routes stay their own.
    assert (await as_admin.get(f"/api/session/get/{sid}")).json()["sessionName"] == "private"
    frames = await send(as_admin, sid, "admin here")
    assert frames[-1].type == "done"
    assert (await as_admin.post(f"/api/session/delete/{sid}")).status_code == 204
    assert (await as_admin.get("/api/session/names")).json() == []
    response, _ = await stream(as_admin, "GET", "/api/session/replay/private")
    assert response.status_code == 404

    # Alice's session is intact.
    texts = [f.data["text"] for f in await replay(as_alice, "private") if f.type == "user_message"]
    assert texts == ["secret plans", "admin here"]


ROUTES = [
    ("POST", "/api/session/create", {"agent": "assistant"}),
    ("POST", "/api/session/newUserMessage/1", {"message": "hi"}),
    ("GET", "/api/session/replay/x", None),
    ("GET", "/api/session/names", None),
    ("GET", "/api/session/get/1", None),
    ("POST", "/api/session/delete/1", None),
    ("DELETE", "/api/session/byName/x", None),
    ("GET", "/api/models", None),
    ("GET", "/api/agents", None),
]


async def test_anonymous_callers_get_401_everywhere(anon):
    for method, url, body in ROUTES:
        response = await anon.request(method, url, json=body)
        assert response.status_code == 401, (method, url)
        assert response.json()["error"]["code"] == "unauthorized"


async def test_cookie_requests_from_another_origin_are_refused(server, alice):
    async with signed_in(server, alice) as client:
        session = await create_session(client)
        for method, url, body in ROUTES:
            if method == "GET":
                continue
            url = url.replace("/1", f"/{session['id']}")
            response = await client.request(
                method, url, json=body, headers={"Origin": "https://evil.example"}
            )
            assert response.status_code == 403, (method, url)
        assert (await client.get(f"/api/session/get/{session['id']}")).status_code == 200


async def test_api_tokens_work_on_every_route(as_alice, server):
    token = (await as_alice.post("/api/tokens", json={"name": "cli"})).json()["token"]
    async with client_for(server, headers={"Authorization": f"Bearer {token}"}) as cli:
        session = await create_session(cli, sessionName="from the cli")
        frames = await send(cli, session["id"], "hello")
        assert frames[-1].type == "done"
        assert (await replay(cli, "from the cli"))[0].type == "user_message"
        assert (await cli.get("/api/session/names")).status_code == 200
        assert (await cli.get("/api/models")).status_code == 200
        assert (await cli.get("/api/agents")).status_code == 200
        assert (await cli.delete("/api/session/byName/from the cli")).status_code == 204
