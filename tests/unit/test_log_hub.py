"""The log hub: one reader per log file however many follow it, every
follower gets every record after its resume point, and following ends after a
terminal record."""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path

import trio

from crewboard.sessionlog import LogWriter
from crewboard.web.loghub import LogHub


async def test_followers_share_one_reader_and_all_get_every_record(
    tmp_path: Path, nursery, autojump_clock
):
    path = tmp_path / "run.jsonl"
    hub = LogHub(nursery, poll_s=0.005)
    encoded: list[int] = []

    def encode(record: dict) -> int:
        encoded.append(record["seq"])
        return record["seq"]

    results: dict[int, list[int]] = {}

    async def follower(n: int, after: int) -> None:
        got: list[int] = []
        batches = hub.follow_batches(path, after, encode=encode)
        async with aclosing(batches):
            async for batch in batches:
                got.extend(batch or [])
        results[n] = got

    with LogWriter(path) as writer:
        async with trio.open_nursery() as followers:
            for n in range(100):
                followers.start_soon(follower, n, n % 3)
            await trio.sleep(0.05)
            assert hub.files == 1
            for n in range(20):
                writer.append("text", text=f"step {n}")
                if n % 5 == 0:
                    await trio.sleep(0.01)
            writer.append("final_result", text="done")
            writer.append("text", text="never seen: after the terminal record")
    assert all(results[n] == list(range(n % 3 + 1, 22)) for n in range(100))
    # Encoded once per record, not once per follower.
    assert len(encoded) == len(set(encoded)) and set(range(1, 22)) <= set(encoded)
    await trio.sleep(1)  # virtual: past the reader's longest poll (0.05 s after the end)
    assert hub.files == 0


async def test_follow_yields_records_and_ends_after_the_terminal_one(
    tmp_path, nursery, autojump_clock
):
    path = tmp_path / "run.jsonl"
    with LogWriter(path) as writer:
        writer.append("user_message", text="hi")
        writer.append("text", text="a")
        writer.append("error", message="gone")
    hub = LogHub(nursery, poll_s=0.005)
    with trio.fail_after(2):
        got = [record["type"] async for record in hub.follow(path, after_seq=1)]
    assert got == ["text", "error"]


async def test_the_reader_stops_when_the_last_follower_leaves(tmp_path, nursery, autojump_clock):
    path = tmp_path / "run.jsonl"
    hub = LogHub(nursery, poll_s=0.005)
    with LogWriter(path) as writer:
        writer.append("user_message", text="hi")
        batches = hub.follow_batches(path, 0, idle_s=0.02)
        async with aclosing(batches):
            async for batch in batches:
                assert batch is not None
                break
        await trio.sleep(0.05)
        assert hub.files == 0


async def test_an_idle_follower_is_told_so(tmp_path, nursery, autojump_clock):
    path = tmp_path / "missing-yet.jsonl"
    hub = LogHub(nursery, poll_s=0.005)
    batches = hub.follow_batches(path, 0, idle_s=0.05)
    async with aclosing(batches):
        with trio.fail_after(1):
            assert await batches.__anext__() is None
            LogWriter(path).append("final_result", text="late")
            while (batch := await batches.__anext__()) is None:
                pass
    assert [r["type"] for r in batch] == ["final_result"]
