"""Accounts, browser sessions and personal API tokens.

Session cookies and API tokens are random secrets handed to the user once;
the board keeps only their SHA-256, so reading board.db does not yield
credentials. Both are revocable by deleting their row; a token may also
carry an expiry, after which it signs no one in.

Disabling an account (:func:`disable_user`) also takes its work off the
queue in the same transaction: its waiting and ready jobs are blocked
("owner disabled") and its schedules paused, each with an event. Enabling
it again gives back sign-in only; the user unblocks and resumes what they
want. The dispatcher's claim never starts a disabled user's job either
(:func:`crewboard.board.dispatch.claim_ready_job`).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from crewboard.board.db import is_transient_error, write
from crewboard.board.events import EventKind, record_event
from crewboard.board.models import ApiToken, AuthSession, Job, JobStatus, Schedule, User
from crewboard.board.wake import wakes_supervisors
from crewboard.clock import iso
from crewboard.errors import Conflict, NotFound
from crewboard.wakeup import SCHEDULES

SESSION_TTL = timedelta(days=14)
# Sliding expiry and last-used times are written at most this often, so a busy
# client does not turn every read into a write.
TOUCH_EVERY = timedelta(minutes=1)
TOKEN_PREFIX = "cb_"
# The reason on jobs blocked, and schedules paused, because their owner was disabled.
OWNER_DISABLED = "owner disabled"
MAX_TOKEN_DAYS = 3650

log = logging.getLogger(__name__)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def normalize_email(email: str) -> str:
    return email.strip().lower()


@dataclass(frozen=True)
class Principal:
    """Who a request acts as, and how they proved it."""

    user_id: int
    email: str
    name: str
    is_admin: bool
    auth_method: str  # local | google | token

    def profile(self) -> dict[str, object]:
        return {
            "id": self.user_id,
            "email": self.email,
            "name": self.name,
            "isAdmin": self.is_admin,
            "authMethod": self.auth_method,
        }


def _principal(user: User, method: str) -> Principal:
    return Principal(user.id, user.email, user.name, user.is_admin, method)


# --- accounts -----------------------------------------------------------------


def count_users() -> int:
    return User.select().count()


def get_user_by_email(email: str) -> User | None:
    return User.get_or_none(User.email == normalize_email(email))


def list_users() -> list[User]:
    return list(User.select().order_by(User.id))


@write
def create_user(
    email: str,
    password_hash: str | None,
    *,
    name: str = "",
    is_admin: bool = False,
    auth_method: str = "local",
    google_sub: str | None = None,
    now: datetime,
) -> User:
    email = normalize_email(email)
    if User.select().where(User.email == email).exists():
        raise Conflict(f"a user with email {email} already exists")
    return User.create(
        email=email,
        name=name or email.split("@")[0],
        password_hash=password_hash,
        is_admin=is_admin,
        auth_method=auth_method,
        google_sub=google_sub,
        created_at=now,
    )


@write
def create_first_admin(email: str, password_hash: str, *, now: datetime) -> User | None:
    """Create the first admin if and only if the board has no users yet (two
    processes starting at once create one admin between them)."""
    if User.select().exists():
        return None
    email = normalize_email(email)
    return User.create(
        email=email,
        name="Administrator",
        password_hash=password_hash,
        is_admin=True,
        auth_method="local",
        created_at=now,
    )


@write
def set_password(email: str, password_hash: str) -> User:
    user = get_user_by_email(email)
    if user is None:
        raise NotFound(f"no user with email {normalize_email(email)}")
    user.password_hash = password_hash
    user.save()
    AuthSession.delete().where(AuthSession.user == user).execute()
    return user


@write
def promote(email: str) -> User:
    user = get_user_by_email(email)
    if user is None:
        raise NotFound(f"no user with email {normalize_email(email)}")
    user.is_admin = True
    user.save()
    return user


@write
def remove_user(email: str, *, purge: bool = False, now: datetime) -> User:
    """Revoke every session and token and disable the account
    (:func:`disable_user`); ``purge`` deletes the account and everything it
    owns instead."""
    user = get_user_by_email(email)
    if user is None:
        raise NotFound(f"no user with email {normalize_email(email)}")
    AuthSession.delete().where(AuthSession.user == user).execute()
    ApiToken.delete().where(ApiToken.user == user).execute()
    if purge:
        user.delete_instance()
    else:
        disable_user(user.id, actor="admin", now=now)
    return user


@dataclass(frozen=True)
class Disabled:
    """What :func:`disable_user` took off the queue."""

    blocked_job_ids: list[int]
    paused_schedule_ids: list[int]


@write
@wakes_supervisors(SCHEDULES)
def disable_user(user_id: int, *, actor: str, now: datetime) -> Disabled:
    """Disable the account: it signs in no more, its waiting and ready jobs
    are blocked and its enabled schedules paused, each with an event giving
    the reason (:data:`OWNER_DISABLED`) — all in one transaction. Its
    running jobs finish; its sessions and tokens stay, refused while it is
    disabled. Disabling a disabled account changes nothing more."""
    if User.update(disabled=True).where(User.id == user_id).execute() == 0:
        raise NotFound("no such user")
    queued = (JobStatus.WAITING, JobStatus.READY)
    blocked = []
    for job in Job.select().where((Job.owner == user_id) & Job.status.in_(queued)).order_by(Job.id):
        if (
            Job.update(status=JobStatus.BLOCKED, blocked_reason=OWNER_DISABLED, updated_at=now)
            .where((Job.id == job.id) & (Job.status == job.status))
            .execute()
        ):
            blocked.append(job.id)
            record_event(
                EventKind.BLOCKED,
                job=job,
                actor=actor,
                message=OWNER_DISABLED,
                data={"from": job.status, "status": JobStatus.BLOCKED, "reason": OWNER_DISABLED},
                now=now,
            )
    paused = []
    for schedule in Schedule.select().where((Schedule.owner == user_id) & Schedule.enabled):
        Schedule.update(enabled=False, next_run_at=None, updated_at=now).where(
            Schedule.id == schedule.id
        ).execute()
        paused.append(schedule.id)
        record_event(
            EventKind.DISABLED,
            schedule=schedule,
            actor=actor,
            message=f"paused: {OWNER_DISABLED}",
            data={"reason": OWNER_DISABLED},
            now=now,
        )
    return Disabled(blocked, paused)


@write
def enable_user(user_id: int) -> User:
    """Let a disabled account sign in again. Its blocked jobs and paused
    schedules stay as they are, for the user to unblock and resume."""
    if User.update(disabled=False).where(User.id == user_id).execute() == 0:
        raise NotFound("no such user")
    return User.get_by_id(user_id)


def owned_files(user_id: int) -> tuple[list[int], list[int]]:
    """The run ids and chat session ids whose files on disk belong to the
    user, so a purge can remove them too."""
    from crewboard.board.models import ChatSession, Job, Run

    run_ids = [r.id for r in Run.select(Run.id).join(Job).where(Job.owner == user_id)]
    chat_ids = [
        c.id for c in ChatSession.select(ChatSession.id).where(ChatSession.owner == user_id)
    ]
    return run_ids, chat_ids


@write
def provision_google_user(sub: str, email: str, name: str, *, now: datetime) -> User:
    """The account of a Google identity: found by subject, else linked by a
    verified email, else created on first login."""
    user = User.get_or_none(User.google_sub == sub)
    if user is None:
        user = get_user_by_email(email)
        if user is not None:
            user.google_sub = sub
            user.save()
        else:
            user = User.create(
                email=normalize_email(email),
                name=name or email.split("@")[0],
                password_hash=None,
                is_admin=False,
                auth_method="google",
                google_sub=sub,
                created_at=now,
            )
    return user


# --- browser sessions ---------------------------------------------------------


@write
def create_session(user_id: int, auth_method: str = "local", *, now: datetime) -> str:
    """Start a browser session; returns the cookie secret (shown only here)."""
    token = secrets.token_urlsafe(32)
    AuthSession.create(
        token_hash=_digest(token),
        user=user_id,
        auth_method=auth_method,
        created_at=now,
        last_seen_at=now,
        expires_at=now + SESSION_TTL,
    )
    return token


def session_principal(token: str, *, now: datetime) -> Principal | None:
    """The user behind a session cookie, or None if it is unknown, expired,
    revoked or its user is disabled. Extends the session as it is used."""
    if not token or len(token) > 200:
        return None
    row = (
        AuthSession.select(AuthSession, User)
        .join(User)
        .where(AuthSession.token_hash == _digest(token))
        .first()
    )
    if row is None or row.expires_at <= now or row.user.disabled:
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        _touch_quietly(_touch_session, row.id, now=now)
    return _principal(row.user, row.auth_method)


def _touch_quietly(touch: Callable[..., None], row_id: int, *, now: datetime) -> None:
    """A touch is bookkeeping: with the disk full (or the board briefly
    unavailable) reads still sign in, and the next request touches again."""
    try:
        touch(row_id, now=now)
    except Exception as exc:
        if not is_transient_error(exc):
            raise
        log.warning("could not record a sign-in's use: %s", exc)


@write
def _touch_session(session_id: int, *, now: datetime) -> None:
    AuthSession.update(last_seen_at=now, expires_at=now + SESSION_TTL).where(
        AuthSession.id == session_id
    ).execute()


@write
def revoke_session(token: str) -> bool:
    return AuthSession.delete().where(AuthSession.token_hash == _digest(token)).execute() > 0


@write
def purge_expired_sessions(*, now: datetime) -> int:
    """Delete the sessions expired by ``now`` (they already sign no one in);
    returns how many went. The supervisor calls it from time to time."""
    return AuthSession.delete().where(AuthSession.expires_at <= now).execute()


# --- API tokens ---------------------------------------------------------------


def token_public(token: ApiToken) -> dict[str, object]:
    return {
        "id": token.id,
        "name": token.name,
        "createdAt": iso(token.created_at),
        "lastUsedAt": iso(token.last_used_at),
        "expiresAt": iso(token.expires_at),
    }


@write
def create_token(
    user_id: int, name: str, *, expires_in_days: int | None = None, now: datetime
) -> tuple[ApiToken, str]:
    """Make a personal API token, valid for ``expires_in_days`` (None: until
    revoked); returns the row and the secret (shown once)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None
    row = ApiToken.create(
        user=user_id,
        name=name,
        token_hash=_digest(secret),
        created_at=now,
        expires_at=expires_at,
    )
    return row, secret


def list_tokens(user_id: int) -> list[ApiToken]:
    return list(ApiToken.select().where(ApiToken.user == user_id).order_by(ApiToken.id))


@write
def revoke_token(user_id: int, token_id: int) -> bool:
    """Delete one of the user's own tokens; False if they have no such token."""
    return (
        ApiToken.delete().where((ApiToken.id == token_id) & (ApiToken.user == user_id)).execute()
        > 0
    )


def token_principal(secret: str, *, now: datetime) -> Principal | None:
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    row = (
        ApiToken.select(ApiToken, User)
        .join(User)
        .where(ApiToken.token_hash == _digest(secret))
        .first()
    )
    if row is None or row.user.disabled:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
        _touch_quietly(_touch_token, row.id, now=now)
    return _principal(row.user, "token")


@write
def _touch_token(token_id: int, *, now: datetime) -> None:
    ApiToken.update(last_used_at=now).where(ApiToken.id == token_id).execute()
