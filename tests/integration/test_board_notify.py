"""Notifications between nodes on a PostgreSQL board: delivered when the
sending transaction commits, never when it rolls back, and a listener whose
connection is cut says so and listens again."""

from __future__ import annotations

import pytest
import trio

from crewboard.board import db, notify
from tests.support.engine import admin_sql

pytestmark = pytest.mark.postgres


@db.write
def _send(channel: str, payload: str, fail: bool = False) -> None:
    notify.notify(channel, payload)
    if fail:
        raise RuntimeError("rolled back")


async def _next(listener: notify.Listener) -> list[notify.Notification]:
    with trio.fail_after(10):
        return await listener.wait()


async def test_a_committed_notification_reaches_listeners_and_a_rolled_back_one_never_does(pg):
    async with notify.listening([notify.BOARD, notify.RECORDS]) as listener:
        assert listener is not None
        with pytest.raises(RuntimeError):
            await db.call(_send, notify.BOARD, "lost", fail=True)
        await db.call(_send, notify.RECORDS, "run:7")
        got = await _next(listener)
    assert got == [notify.Notification(notify.RECORDS, "run:7")]


async def test_repeats_within_one_transaction_arrive_once(pg):
    @db.write
    def twice() -> None:
        notify.notify(notify.BOARD, "x")
        notify.notify(notify.BOARD, "x")

    async with notify.listening([notify.BOARD]) as listener:
        await db.call(twice)
        got = await _next(listener)
    assert got == [notify.Notification(notify.BOARD, "x")]


async def test_a_listener_whose_connection_is_cut_reports_it_and_listens_again(pg):
    config, _ = pg
    server, _, name = config.database_url.rpartition("/")
    async with notify.listening([notify.WAKE]) as listener:
        admin_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND query LIKE 'LISTEN%'",
            server,
        )
        assert await _next(listener) == [notify.Notification(notify.RECONNECTED, "")]
        await db.call(_send, notify.WAKE, "")
        assert await _next(listener) == [notify.Notification(notify.WAKE, "")]


def test_on_sqlite_there_is_no_listener_and_notify_does_nothing(home):
    if not db.is_sqlite():
        pytest.skip("the SQLite board's behaviour")
    _send(notify.WAKE, "")

    async def main() -> None:
        async with notify.listening([notify.WAKE]) as listener:
            assert listener is None

    trio.run(main)


def test_a_payload_postgresql_would_refuse_is_refused_before_sending(pg):
    with pytest.raises(ValueError, match="payload"):
        _send(notify.RECORDS, "x" * 8000)
