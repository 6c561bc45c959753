"""Followers wake on another process's write, not at their next poll: the
file watch, the log hub on it, and the board's change signal. Every poll here
is an hour long, so a follower that does not hear of a write within the
deadline has not heard of it at all."""

from __future__ import annotations

import subprocess
import sys
from contextlib import aclosing
from pathlib import Path

import pytest
import trio

from crewboard.fswatch import FileWatch
from crewboard.home import Home
from crewboard.sessionlog import LogWriter
from crewboard.web.board_changes import BoardChanges
from crewboard.web.loghub import LogHub
from tests.support.crews import add_job

HOUR_S = 3600.0
DEADLINE_S = 20.0

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


def append_from_another_process(path: Path, text: str) -> None:
    subprocess.run([sys.executable, "-c", f"open({str(path)!r}, 'a').write({text!r})"], check=True)


@pytest.fixture
async def watch(nursery) -> FileWatch:
    return await nursery.start(FileWatch().serve)


async def test_an_armed_task_wakes_when_another_process_appends(tmp_path: Path, watch):
    path = tmp_path / "run.jsonl"
    path.write_text("")
    changed = watch.arm(path)
    assert changed is not None and watch.arm(path) is changed  # one event per file
    await trio.to_thread.run_sync(append_from_another_process, path, "line\n")
    with trio.fail_after(DEADLINE_S):
        await changed.wait()
    assert watch.arm(path) is not changed  # the next change needs a new arming


async def test_a_file_created_after_arming_wakes_its_task(tmp_path: Path, watch):
    path = tmp_path / "chat.jsonl"
    changed = watch.arm(path)
    assert changed is not None
    other = watch.arm(tmp_path / "other.jsonl")
    await trio.to_thread.run_sync(append_from_another_process, path, "first\n")
    with trio.fail_after(DEADLINE_S):
        await changed.wait()
    assert other is not None and not other.is_set()  # a neighbour's write is not its change


async def test_what_cannot_be_watched_is_polled(tmp_path: Path, watch):
    assert watch.arm(tmp_path / "missing-folder" / "run.jsonl") is None
    assert FileWatch().arm(tmp_path / "run.jsonl") is None  # not serving yet


async def test_a_log_follower_gets_another_process_records_without_polling(
    tmp_path: Path, nursery, watch
):
    path = tmp_path / "run.jsonl"
    hub = LogHub(nursery, poll_s=HOUR_S, watch=watch)
    hub.watched_poll_s = HOUR_S
    with LogWriter(path) as writer:
        writer.append("text", text="already there")
    got: list[str] = []
    with trio.fail_after(DEADLINE_S):
        async with aclosing(hub.follow(path)) as records:
            async for record in records:
                got.append(record["type"])
                if record["type"] == "text":
                    # The next records come from another process, after the
                    # reader has gone back to waiting.
                    await trio.to_thread.run_sync(_finish_log_elsewhere, path)
    assert got == ["text", "text", "final_result"]


def _finish_log_elsewhere(path: Path) -> None:
    code = (
        "import sys; from crewboard.sessionlog import LogWriter\n"
        "with LogWriter(sys.argv[1]) as w:\n"
        "    w.append('text', text='more'); w.append('final_result', text='done')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)


@pytest.mark.sqlite_only("the signal is a commit to SQLite's WAL")
async def test_a_board_commit_is_the_board_change_signal(home: Home, watch):
    changes = BoardChanges(watch, home.board_db)
    changes.watched_poll_s = HOUR_S
    committed = changes.arm()
    assert committed is not None
    await trio.to_thread.run_sync(add_job)
    with trio.fail_after(DEADLINE_S):
        await changes.wait(committed, HOUR_S)
    assert committed.is_set()


async def test_a_postgresql_board_is_polled(watch):
    changes = BoardChanges(watch, None)
    assert changes.arm() is None
    with trio.move_on_after(0.01) as waited:
        await changes.wait(None, HOUR_S)
    assert waited.cancelled_caught  # the poll interval, not a wake-up
