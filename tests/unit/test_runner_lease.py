"""What a runner's supervisor tells it on stdin after the spec: lease
renewals, watched by the lease watchdog, and the board's acknowledgements,
in lines that may arrive in pieces. Time is a clock the test moves."""

from __future__ import annotations

import threading

from crewboard.runner.lease import LeaseWatch
from crewboard.runner.main import Told
from crewboard.runner.settle import Acks
from crewboard.runspec import Lease


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_lease_lapses_after_three_quarters_of_it_without_a_renewal() -> None:
    clock = Clock()
    watch = LeaseWatch(Lease(seconds=4), clock=clock)
    clock.now += 3.0
    assert not watch.lapsed()
    clock.now += 0.01
    assert watch.lapsed()


def test_each_renewal_starts_the_wait_again() -> None:
    clock = Clock()
    watch = LeaseWatch(Lease(seconds=4), clock=clock)
    for _ in range(10):
        clock.now += 2.9
        watch.renewed()
        assert not watch.lapsed()
    clock.now += 3.01
    assert watch.lapsed()


def test_the_watch_is_asked_often_enough_to_stop_well_within_the_lease() -> None:
    assert LeaseWatch(Lease(seconds=15)).every_s == 1.0
    assert LeaseWatch(Lease(seconds=2)).every_s == 2 * 0.75 / 8


def test_an_empty_line_renews_the_lease_and_a_number_is_what_the_board_holds() -> None:
    clock = Clock()
    lease, acks = LeaseWatch(Lease(seconds=4), clock=clock), Acks()
    told = Told(lease, acks)
    clock.now += 3.5
    told.feed(b"\n7\n")
    assert not lease.lapsed()
    assert acks.wait_for(7, 0) and not acks.wait_for(8, 0)


def test_a_line_split_across_reads_is_read_whole() -> None:
    acks = Acks()
    told = Told(acks=acks)
    told.feed(b"1")
    told.feed(b"2")
    assert not acks.wait_for(1, 0)
    told.feed(b"3\n")
    assert acks.wait_for(123, 0) and not acks.wait_for(124, 0)


def test_an_older_acknowledgement_never_lowers_what_the_board_holds() -> None:
    acks = Acks()
    Told(acks=acks).feed(b"9\n4\n")
    assert acks.wait_for(9, 0)


def test_a_number_or_a_stray_line_renews_no_lease() -> None:
    clock = Clock()
    lease = LeaseWatch(Lease(seconds=4), clock=clock)
    told = Told(lease)
    clock.now += 3.5
    told.feed(b"12\nnonsense\n")
    assert lease.lapsed()


def test_a_waiting_result_wakes_when_its_acknowledgement_arrives() -> None:
    acks = Acks()
    told = Told(acks=acks)
    waited: list[bool] = []
    waiter = threading.Thread(target=lambda: waited.append(acks.wait_for(5, 30)))
    waiter.start()
    told.feed(b"3\n")
    told.feed(b"5\n")
    waiter.join(30)
    assert waited == [True]
