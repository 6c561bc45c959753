"""Provider slots shared by runners through lock files: a request waits while
every slot is taken, says how many are ahead, queues first come first served,
and never loses a slot to a runner that died."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from crewboard.runner.slots import SlotPool

WAKE_S = 0.01


def pool(folder: Path, size: int = 1) -> SlotPool:
    return SlotPool(folder, size, wake_s=WAKE_S)


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(WAKE_S)


class Holder(threading.Thread):
    """A runner in a thread: waits for a slot, holds it until released."""

    def __init__(self, slots: SlotPool, name: str, order: list[str]) -> None:
        super().__init__(daemon=True)
        self.slots = slots
        self.label = name
        self.order = order
        self.waits: list[int] = []
        self.holding = threading.Event()
        self.release = threading.Event()

    def run(self) -> None:
        with self.slots.hold(self.waits.append):
            self.order.append(self.label)
            self.holding.set()
            self.release.wait(10)


def test_a_free_slot_is_taken_without_waiting(tmp_path: Path) -> None:
    waits: list[int] = []
    with pool(tmp_path, 2).hold(waits.append), pool(tmp_path, 2).hold(waits.append):
        pass
    assert waits == []


def test_requests_queue_in_order_and_say_how_many_are_ahead(tmp_path: Path) -> None:
    order: list[str] = []
    first, second, third = (Holder(pool(tmp_path), n, order) for n in ("a", "b", "c"))
    first.start()
    assert first.holding.wait(5)
    second.start()
    wait_until(lambda: second.waits == [1])
    third.start()
    wait_until(lambda: third.waits == [2])
    first.release.set()
    assert second.holding.wait(5)
    wait_until(lambda: third.waits == [2, 1])
    assert not third.holding.is_set()
    second.release.set()
    assert third.holding.wait(5)
    third.release.set()
    for holder in (first, second, third):
        holder.join(5)
    assert order == ["a", "b", "c"]
    assert not any((tmp_path / "waiting").iterdir()), "the queue is left empty"


def test_a_dead_waiters_file_is_cleared_and_not_counted(tmp_path: Path) -> None:
    (tmp_path / "waiting").mkdir(parents=True)
    (tmp_path / "waiting" / f"{0:020d}-99999").write_text("")
    waits: list[int] = []
    with pool(tmp_path).hold(waits.append):
        pass
    assert waits == []
    assert not any((tmp_path / "waiting").iterdir())


def test_a_slot_held_by_a_process_that_dies_is_free_again(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
            str(tmp_path / "slot-0.lock"),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        waits: list[int] = []
        got = threading.Event()

        def take() -> None:
            with pool(tmp_path).hold(waits.append):
                got.set()

        thread = threading.Thread(target=take, daemon=True)
        thread.start()
        wait_until(lambda: waits == [1])
        assert not got.is_set()
        holder.kill()
        assert got.wait(5)
        thread.join(5)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
