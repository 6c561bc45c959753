"""Stream frames holding large texts are encoded once, off the event loop;
small ones inline. Job stream ids carry the run, and old ids still resume."""

from __future__ import annotations

import json

import pytest
import trio

from crewboard.web import sse
from crewboard.web.job_stream import RunFrames, parse_resume


def final_result(text: str, seq: int = 4) -> dict:
    return {"seq": seq, "ts": "2026-11-28T21:00:00.000Z", "type": "final_result", "text": text}


@pytest.fixture
def threads(monkeypatch):
    """Counts the calls that went to a worker thread."""
    calls: list[object] = []
    real = trio.to_thread.run_sync

    async def counting(fn, *args, **kwargs):
        calls.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", counting)
    return calls


async def test_a_large_result_is_rendered_on_a_worker_thread_once(threads):
    frames = RunFrames(7)
    lazy = frames(final_result("*owl* " * 40_000))
    first = await sse.frame_bytes([lazy])
    assert len(threads) == 1
    assert await sse.frame_bytes([lazy]) is not None and len(threads) == 1  # kept
    head, data = first.decode().split("\n", 1)
    assert head == "id: 7:4"
    payload = json.loads(data.removeprefix("data: "))
    assert payload["type"] == "final_result" and payload["data"]["html"].startswith("<p><em>owl")


async def test_small_frames_are_encoded_inline(threads):
    frames = RunFrames(7)
    chunk = await sse.frame_bytes([frames(final_result("short", seq=n)) for n in range(1, 4)])
    assert threads == [] and chunk.count(b"\n\n") == 3 and b"id: 7:3\n" in chunk


async def test_large_chat_frames_are_encoded_off_the_loop(threads):
    await sse.encode_frame_async("chunk", {"seq": 1, "type": "text", "text": "x" * 100_000}, 1)
    await sse.encode_frame_async("chunk", {"seq": 2, "type": "text", "text": "x"}, 2)
    assert len(threads) == 1


def test_the_hub_shares_one_encoder_per_run():
    assert RunFrames(3) == RunFrames(3) and hash(RunFrames(3)) == hash(RunFrames(3))
    assert RunFrames(3) != RunFrames(4)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, (None, 0)),
        ("12", (None, 12)),
        ("5:12", (5, 12)),
        ("5:", (None, 0)),
        (":12", (None, 0)),
        ("a:1", (None, 0)),
        ("5:1:2", (None, 0)),
        ("-3", (None, 0)),
    ],
)
def test_resume_ids_name_a_run_and_a_seq(raw, expected):
    assert parse_resume(raw) == expected
