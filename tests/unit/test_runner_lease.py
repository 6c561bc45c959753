"""The runner's lease watchdog, on a clock the test moves."""

from __future__ import annotations

from crewboard.runner.lease import LeaseWatch
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
