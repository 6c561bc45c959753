"""A running supervisor purges expired sign-in sessions from a real board.db
and leaves live ones alone."""

from __future__ import annotations

from datetime import timedelta

from crewboard.board import db, users
from crewboard.board.models import AuthSession
from crewboard.clock import utcnow
from tests.support.supervisor import supervising, wait_for


def expire_sessions_of(user_id: int) -> None:
    AuthSession.update(expires_at=utcnow() - timedelta(minutes=1)).where(
        AuthSession.user == user_id
    ).execute()


def session_users() -> list[int]:
    return [row.user_id for row in AuthSession.select().order_by(AuthSession.id)]


async def test_the_supervisor_purges_expired_sessions(config, home, alice, bob):
    await db.call(users.create_session, alice.id, now=utcnow())
    await db.call(users.create_session, bob.id, now=utcnow())
    await db.call(expire_sessions_of, alice.id)
    assert await db.call(session_users) == [alice.id, bob.id]
    async with supervising(config):
        await wait_for(lambda: session_users() == [bob.id], 10, "the expired session to go")
    assert await db.call(session_users) == [bob.id]
