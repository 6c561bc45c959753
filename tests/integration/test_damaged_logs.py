"""Damaged session logs through the live server: a job's stream and a chat
replay skip torn, binary, huge and non-JSON lines, renumber bad seqs, and
still end with the terminal record (``final_result`` streamed); resuming from
an id the server gave goes on from there. Logs are written straight to disk,
as a runner killed mid-line, a full disk or a hand edit would leave them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import trio

from crewboard import sessionlog
from crewboard.home import Home
from crewboard.sessionlog import ensure_terminal
from tests.support.board_jobs import finish_run, ship_log, start_run
from tests.support.chat import create_session, replay
from tests.support.sse_client import Frame, collect

TEN_MB = 10 * 1024 * 1024


def line(seq: object, type: str = "text", **fields: object) -> bytes:
    return json.dumps(
        {"seq": seq, "ts": "2026-01-01T00:00:00.000Z", "type": type, **fields}
    ).encode()


def damaged_run_log(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\n".join(
            [
                line(1, "user_message", text="Why is the sky blue?"),
                b'{"seq":2,"ts":"2026-01-01T0',  # torn
                b"\x00\xff\xfe binary \x80",
                line(2, text="x" * TEN_MB),  # a 10 MB record
                b"not json",
                b"[1, 2]",
                line("two", agentName="assistant", text="Rayleigh "),
                line(2, agentName="assistant", text="scattering"),  # a duplicate
                line(10**15, agentName="assistant", text="."),  # a jump
                line(3, "final_result", text="Rayleigh scattering.", agentName="assistant"),
            ]
        )
        + b"\n"
    )


async def ask(client: httpx.AsyncClient) -> int:
    response = await client.post(
        "/api/jobs", json={"templateId": "ask", "inputs": {"question": "Why is the sky blue?"}}
    )
    assert response.status_code == 201, response.text
    return response.json()["jobIds"][0]


async def job_stream(client: httpx.AsyncClient, job_id: int, **headers: str) -> list[Frame]:
    url = f"/api/jobs/{job_id}/stream"
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        return await collect(response, until="done", timeout_s=20)


async def test_a_job_stream_survives_a_damaged_log(as_alice, home: Home, caplog):
    caplog.set_level(logging.WARNING, logger=sessionlog.__name__)
    job_id = await ask(as_alice)
    run_id = start_run(job_id, home)
    damaged_run_log(home.run_log(run_id))
    ship_log(home.run_log(run_id))
    finish_run(run_id, result="Rayleigh scattering.")
    got = await job_stream(as_alice, job_id)
    kinds = ["user_message", "chunk", "chunk", "chunk", "final_result", "done"]
    assert [f.type for f in got] == kinds
    assert "".join(f.data["text"] for f in got if f.type == "chunk") == "Rayleigh scattering."
    assert got[-2].data["text"] == "Rayleigh scattering." and "html" in got[-2].data
    ids = [f.id for f in got[:-1]]
    assert len(set(ids)) == len(ids) and None not in ids
    # Resuming from any id the server gave sends exactly what came after it.
    for i, frame in enumerate(got[:-1]):
        assert frame.id is not None
        rest = await job_stream(as_alice, job_id, **{"Last-Event-ID": frame.id})
        assert [(f.type, f.data) for f in rest[:-1]] == [(f.type, f.data) for f in got[i + 1 : -1]]
    assert any("skipped 5 malformed line(s)" in r.getMessage() for r in caplog.records)


async def test_a_live_stream_ends_after_a_torn_line_with_the_closing_record(as_alice, home):
    job_id = await ask(as_alice)
    run_id = start_run(job_id, home)
    path = home.run_log(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)

    async def die_then_close() -> None:
        await trio.sleep(0.3)
        with path.open("ab") as f:
            f.write(line(1, "user_message", text="q") + b"\n")
            f.write(line("1", "text", text="a step with a string seq") + b"\n")
            f.flush()
            ship_log(path)
            await trio.sleep(0.2)
            f.write(b'{"seq":3,"ts":"2026-01-01T00:00:00.000Z","type":"text","text":"half a')
            f.flush()
            ship_log(path)
        await trio.sleep(0.2)
        # What the launcher does once the killed runner is reaped.
        ensure_terminal(path, "the runner was killed")
        ship_log(path)
        finish_run(run_id, "crashed")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(die_then_close)
        got = await job_stream(as_alice, job_id)
    assert [f.type for f in got] == ["user_message", "chunk", "error", "done"]
    assert got[2].data["message"] == "the runner was killed"


async def test_a_chat_replay_survives_a_damaged_log(as_alice, home: Home):
    session = await create_session(as_alice, sessionName="damaged")
    path = home.chat_log(session["id"])
    damaged_run_log(path)
    with path.open("ab") as f:
        f.write(line(4, "user_message", text="and at sunset?") + b"\n")
        f.write(line(4, "text", text="longer path") + b"\n")  # a duplicate
        f.write(line(1, "final_result", text="More air.") + b'\n{"seq":')  # a torn tail
    ship_log(path)
    frames = await replay(as_alice, "damaged")
    first_turn = ["user_message", "chunk", "chunk", "chunk", "final_result"]
    assert [f.type for f in frames] == [*first_turn, "user_message", "chunk", "final_result"]
    assert [int(f.id or 0) for f in frames] == list(range(1, 9))
    assert frames[4].data["text"] == "Rayleigh scattering."
    assert frames[-1].data["text"] == "More air." and "html" in frames[-1].data
    assert await replay(as_alice, "damaged", last_event_id=5) == frames[5:]
    # The next turn numbers on from what replay showed.
    response = await as_alice.post(
        f"/api/session/newUserMessage/{session['id']}", json={"message": "thanks"}
    )
    assert response.status_code == 200, response.text
    again = await replay(as_alice, "damaged")
    assert again[:8] == frames and again[8].type == "user_message"
    assert [int(f.id or 0) for f in again] == list(range(1, len(again) + 1))
