"""A wake-up names the parts of the supervisor it is for: new work wakes the
dispatcher, a changed schedule the scheduler, a queued delivery the webhook
sender, and only those go to the board. Through the home's socket (one host)
and through PostgreSQL's notifications (every host), with the same words."""

from __future__ import annotations

from pathlib import Path

import trio

from crewboard.board import db, notify
from crewboard.board import jobs as board_jobs
from crewboard.board.models import Crew
from crewboard.clock import utcnow
from crewboard.home import Home
from crewboard.supervisor.wake import (
    Wakeup,
    open_wake_socket,
    serve_wake_notifications,
    serve_wake_socket,
)
from crewboard.wakeup import EVERYTHING, JOBS, SCHEDULES, WEBHOOKS, wake_supervisor
from tests.support import crews
from tests.support.crews import JobDef


def woken(wakeups: dict[str, Wakeup]) -> set[str]:
    return {part for part, wakeup in wakeups.items() if wakeup.is_set()}


async def until_woken(wakeups: dict[str, Wakeup], part: str) -> set[str]:
    """Which parts are set once ``part`` is (a wake-up's parts are set together)."""
    with trio.fail_after(10):
        await wakeups[part].wait()
    parts = woken(wakeups)
    for wakeup in wakeups.values():
        wakeup.clear()
    return parts


async def test_the_home_socket_wakes_only_the_parts_a_wake_up_names(tmp_path: Path) -> None:
    home = Home(tmp_path / "home").ensure()
    wakeups = {part: Wakeup() for part in EVERYTHING}
    async with open_wake_socket(home.wake_socket) as sock, trio.open_nursery() as nursery:
        await nursery.start(serve_wake_socket, sock, wakeups)
        assert wake_supervisor(home, WEBHOOKS)
        assert await until_woken(wakeups, WEBHOOKS) == {WEBHOOKS}
        assert wake_supervisor(home, JOBS, SCHEDULES)
        assert await until_woken(wakeups, JOBS) == {JOBS, SCHEDULES}
        # Naming nothing, or only words it does not know (an older web's
        # "wake"), wakes every part.
        assert wake_supervisor(home)
        assert await until_woken(wakeups, JOBS) == EVERYTHING
        with trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM) as old:
            await old.sendto(b"wake", str(home.wake_socket))
        assert await until_woken(wakeups, SCHEDULES) == EVERYTHING
        nursery.cancel_scope.cancel()


@db.write
def _cancelled_crew_posting_somewhere() -> None:
    ids = crews.add_crew({"only": JobDef("Say hello.")})
    job = crews.job(ids["only"])
    Crew.update(webhook_url="https://hooks.example.test/x").where(Crew.id == job.crew_id).execute()
    board_jobs.request_cancel(job.id, job.owner_id, now=utcnow())


async def test_a_board_write_wakes_every_host_for_what_it_changed(pg) -> None:
    wakeups = {part: Wakeup() for part in EVERYTHING}
    async with notify.listening([notify.WAKE]) as listener, trio.open_nursery() as nursery:
        assert listener is not None
        await nursery.start(serve_wake_notifications, wakeups)
        # A new crew: the dispatcher alone.
        owner = await db.call(crews.add_job)  # written without a wake-up
        await db.call(crews.backlog, crews.job(owner).owner_id, 1)
        with trio.fail_after(10):
            got = await listener.wait()
        assert got == [notify.Notification(notify.WAKE, JOBS)]
        assert await until_woken(wakeups, JOBS) == {JOBS}
        # A cancel that blocks a ready job and queues its webhook: both.
        await db.call(_cancelled_crew_posting_somewhere)
        with trio.fail_after(10):
            words = {n.payload for n in await listener.wait()}
        assert {part for payload in words for part in payload.split()} == {JOBS, WEBHOOKS}
        assert await until_woken(wakeups, WEBHOOKS) == {JOBS, WEBHOOKS}
        nursery.cancel_scope.cancel()
