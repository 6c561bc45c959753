"""The broadcast buffer under every live stream: followers read what came
after their id, repeats are skipped, a bounded buffer says what it forgot,
derived values are computed once, and waiting ends on news or on close."""

from __future__ import annotations

import trio
from trio.testing import wait_all_tasks_blocked

from crewboard.web.broadcast import Broadcast


def test_followers_read_after_their_id_and_repeats_are_skipped():
    buffer: Broadcast[str] = Broadcast()
    buffer.publish([(1, "a"), (2, "b")])
    buffer.publish([(2, "b again"), (3, "c")])
    assert buffer.after(0) == ["a", "b", "c"]
    assert buffer.after(2) == ["c"]
    assert buffer.after(3) == []
    assert buffer.last_id == 3


def test_a_bounded_buffer_forgets_its_oldest_items_and_says_so():
    buffer: Broadcast[int] = Broadcast(floor=10, keep=2)
    assert buffer.last_id == 10
    buffer.publish((n, n) for n in range(11, 15))
    assert buffer.floor == 10 and buffer.after(10) == [11, 12, 13, 14]
    buffer.publish([(15, 15)])
    # Past twice `keep`: back to the newest `keep`, the floor at the newest dropped.
    assert buffer.floor == 13 and buffer.after(0) == [14, 15]


def test_derived_values_are_computed_once_per_item_and_survive_trimming():
    calls: list[int] = []

    def double(n: int) -> int:
        calls.append(n)
        return 2 * n

    buffer: Broadcast[int] = Broadcast(keep=2)
    buffer.publish((n, n) for n in range(1, 5))
    assert buffer.after(0, double) == [2, 4, 6, 8]
    assert buffer.after(2, double) == [6, 8]
    buffer.publish([(5, 5)])
    assert buffer.after(0, double) == [8, 10]
    assert calls == [1, 2, 3, 4, 5]


async def test_waiting_ends_on_a_newer_item_or_on_close():
    buffer: Broadcast[str] = Broadcast()
    buffer.publish([(1, "old")])
    woken: list[str] = []

    async def follower(after_id: int) -> None:
        await buffer.wait_after(after_id)
        woken.append("closed" if buffer.closed else buffer.after(after_id)[0])

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follower, 1)
            await wait_all_tasks_blocked()
            buffer.publish([(1, "repeat")])
            await wait_all_tasks_blocked()
            assert woken == []
            buffer.publish([(2, "new")])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follower, 2)
            await wait_all_tasks_blocked()
            buffer.close()
    assert woken == ["new", "closed"]
