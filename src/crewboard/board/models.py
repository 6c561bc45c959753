"""The board's tables: every row the product keeps, with the indexes its list
queries need. Only ``crewboard.board`` touches these; other layers call the
named functions in the board's other modules."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import peewee

from crewboard.board.db import database


class UTCDateTimeField(peewee.Field):
    """An aware UTC datetime, stored as fixed-width text on SQLite (so text
    order is time order) and as a timestamp on PostgreSQL."""

    field_type = "DATETIME"

    def db_value(self, value: Any) -> Any:
        if value is None or isinstance(value, peewee.Node):
            return value
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        # isoformat with its microseconds always written: the same fixed-width
        # text as strftime("%Y-%m-%d %H:%M:%S.%f"), at a third of its cost
        # (every transition writes several times).
        return value.isoformat(" ", "microseconds")

    def python_value(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JobStatus(StrEnum):
    WAITING = "waiting"  # parents not done, or scheduledAt not reached
    READY = "ready"  # may be claimed by the dispatcher (once available_at passes)
    RUNNING = "running"  # a run is live
    BLOCKED = "blocked"  # needs a person: failed out, blocked by the agent, or cancelled
    DONE = "done"  # finished with a result
    ARCHIVED = "archived"  # soft-deleted, kept for the record


class RunOutcome(StrEnum):
    RUNNING = "running"  # the runner is live
    SUCCEEDED = "succeeded"  # ended with a final_result
    BLOCKED = "blocked"  # the agent's block tool ended it
    CANCELLED = "cancelled"  # a user cancelled it
    FAILED = "failed"  # ended with an error record; uses a retry
    CRASHED = "crashed"  # killed, or exited non-zero with no terminal record; uses a retry
    TIMED_OUT = "timed_out"  # exceeded the job's timeout; uses a retry
    INTERRUPTED = "interrupted"  # the supervisor's shutdown or death stopped it; requeued free


class BoardIdField(peewee.AutoField):
    """An integer id that is never handed out twice. SQLite would otherwise
    reuse the id of a deleted last row, and ids name log files, artifact
    folders, URLs and change-feed positions."""

    def ddl(self, ctx: Any) -> Any:
        node = super().ddl(ctx)
        db = self.model._meta.database
        if isinstance(getattr(db, "obj", db), peewee.SqliteDatabase):
            return peewee.NodeList((node, peewee.SQL("AUTOINCREMENT")))
        return node


class BaseModel(peewee.Model):
    """Every table. peewee gives each foreign key ``x`` an attribute ``x_id``
    holding the raw id; the tables declare those as bare annotations, which
    peewee ignores, so that the type checker knows them too."""

    id = BoardIdField()

    class Meta:
        database = database
        legacy_table_names = False


class Meta(BaseModel):
    """Key/value facts about the board itself, such as the schema version."""

    key = peewee.CharField(primary_key=True, max_length=64)
    value = peewee.TextField()


class User(BaseModel):
    email = peewee.CharField(max_length=320, unique=True)
    name = peewee.CharField(max_length=200, default="")
    password_hash = peewee.TextField(null=True)
    is_admin = peewee.BooleanField(default=False)
    auth_method = peewee.CharField(max_length=16, default="local")  # local | google
    google_sub = peewee.CharField(max_length=255, null=True, unique=True)
    disabled = peewee.BooleanField(default=False)
    created_at = UTCDateTimeField()


class AuthSession(BaseModel):
    """A browser login. The cookie holds a random token; the row keeps only its
    SHA-256, so a copy of the board cannot be replayed as cookies."""

    token_hash = peewee.CharField(max_length=64, unique=True)
    user = peewee.ForeignKeyField(User, backref="auth_sessions", on_delete="CASCADE")
    user_id: int
    auth_method = peewee.CharField(max_length=16, default="local")
    created_at = UTCDateTimeField()
    last_seen_at = UTCDateTimeField()
    expires_at = UTCDateTimeField(index=True)


class ApiToken(BaseModel):
    user = peewee.ForeignKeyField(User, backref="api_tokens", on_delete="CASCADE")
    user_id: int
    name = peewee.CharField(max_length=100)
    token_hash = peewee.CharField(max_length=64, unique=True)
    created_at = UTCDateTimeField()
    last_used_at = UTCDateTimeField(null=True)
    # After this the token signs no one in; None: until revoked.
    expires_at = UTCDateTimeField(null=True)


class ChatSession(BaseModel):
    owner = peewee.ForeignKeyField(User, backref="chat_sessions", on_delete="CASCADE", index=False)
    owner_id: int
    session_name = peewee.CharField(max_length=200)
    agent = peewee.CharField(max_length=64)
    model_spec = peewee.CharField(max_length=200)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()

    class Meta:
        indexes = ((("owner", "session_name"), True), (("owner", "updated_at"), False))


class Schedule(BaseModel):
    owner = peewee.ForeignKeyField(User, backref="schedules", on_delete="CASCADE", index=False)
    owner_id: int
    name = peewee.CharField(max_length=200)
    template_id = peewee.CharField(max_length=100)
    inputs = peewee.JSONField(default=dict)
    rule = peewee.CharField(max_length=200)
    timezone = peewee.CharField(max_length=64)
    enabled = peewee.BooleanField(default=True)
    overlap = peewee.CharField(max_length=8, default="skip")  # skip | allow
    webhook_url = peewee.CharField(max_length=2048, null=True)  # given to the crews it spawns
    next_run_at = UTCDateTimeField(null=True, index=True)
    last_run_at = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()

    class Meta:
        indexes = ((("owner", "id"), False),)


class Crew(BaseModel):
    """The jobs instantiated together from one template."""

    template_id = peewee.CharField(max_length=100)
    title = peewee.CharField(max_length=300)
    inputs = peewee.JSONField(default=dict)
    owner = peewee.ForeignKeyField(User, backref="crews", on_delete="CASCADE")
    owner_id: int
    schedule = peewee.ForeignKeyField(Schedule, null=True, backref="crews", on_delete="SET NULL")
    schedule_id: int | None
    # Where its jobs' and its own finishes are posted (crewboard.board.webhooks).
    webhook_url = peewee.CharField(max_length=2048, null=True)
    created_at = UTCDateTimeField()


class Job(BaseModel):
    crew = peewee.ForeignKeyField(Crew, backref="jobs", on_delete="CASCADE", index=False)
    crew_id: int
    owner = peewee.ForeignKeyField(User, backref="jobs", on_delete="CASCADE", index=False)
    owner_id: int
    schedule = peewee.ForeignKeyField(
        Schedule, null=True, backref="jobs", on_delete="SET NULL", index=False
    )
    schedule_id: int | None
    key = peewee.CharField(max_length=100)
    title = peewee.CharField(max_length=300)
    agent = peewee.CharField(max_length=64)
    prompt = peewee.TextField()
    artifact_name = peewee.CharField(max_length=200, null=True)
    status = peewee.CharField(max_length=16, default=JobStatus.WAITING)
    scheduled_at = UTCDateTimeField(null=True)
    # When the dispatcher may next claim it: scheduledAt, or a retry's backoff.
    available_at = UTCDateTimeField()
    timeout_s = peewee.IntegerField(default=600)
    max_retries = peewee.IntegerField(default=0)
    attempts = peewee.IntegerField(default=0)  # attempts that used up a retry
    interruptions = peewee.IntegerField(default=0)  # interrupted runs in a row
    feedback = peewee.TextField(null=True)
    result = peewee.TextField(null=True)
    blocked_reason = peewee.TextField(null=True)
    cancel_requested = peewee.BooleanField(default=False)
    status_before_archive = peewee.CharField(max_length=16, null=True)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()
    # The id of the HTTP request that created it (None: a schedule did), carried
    # into its runs' specs and log lines (crewboard.logs).
    request_id = peewee.CharField(max_length=64, null=True)

    class Meta:
        indexes = (
            (("status", "available_at", "id"), False),
            (("owner", "status", "id"), False),
            (("status", "id"), False),
            (("crew", "id"), False),
            (("schedule", "id"), False),
        )


class JobEdge(BaseModel):
    """``child`` needs ``parent``: it waits for the parent's result."""

    parent = peewee.ForeignKeyField(Job, backref="child_edges", on_delete="CASCADE", index=False)
    parent_id: int
    child = peewee.ForeignKeyField(Job, backref="parent_edges", on_delete="CASCADE", index=False)
    child_id: int

    class Meta:
        indexes = ((("parent", "child"), True), (("child",), False))


class Heartbeat(BaseModel):
    """One row per supervisor process, rewritten every heartbeat interval.
    Liveness is the age of ``beat_at`` and nothing else."""

    supervisor_id = peewee.CharField(max_length=100, unique=True)
    pid = peewee.IntegerField()
    host = peewee.CharField(max_length=255)
    # Which kernel boot and pid namespace the pid belongs to
    # (supervisor/heartbeat.py host_identity): two containers may share a
    # hostname, never this.
    host_identity = peewee.CharField(max_length=100, null=True)
    version = peewee.CharField(max_length=32)
    started_at = UTCDateTimeField()
    beat_at = UTCDateTimeField(index=True)
    interval_s = peewee.FloatField(default=2.0)
    running = peewee.IntegerField(default=0)
    capacity = peewee.IntegerField(default=0)
    stopped_at = UTCDateTimeField(null=True)


class Run(BaseModel):
    """One attempt of a job, in its own runner process."""

    job = peewee.ForeignKeyField(Job, backref="runs", on_delete="CASCADE", index=False)
    job_id: int
    attempt = peewee.IntegerField(default=1)
    outcome = peewee.CharField(max_length=16, default=RunOutcome.RUNNING)
    supervisor_id = peewee.CharField(max_length=100)
    pid = peewee.IntegerField(null=True)
    exit_code = peewee.IntegerField(null=True)
    started_at = UTCDateTimeField()
    ended_at = UTCDateTimeField(null=True)
    duration_s = peewee.FloatField(null=True)
    log_path = peewee.TextField(null=True)
    artifact = peewee.CharField(max_length=200, null=True)
    error = peewee.TextField(null=True)
    # While live: until when its supervisor holds it, by the board's clock
    # (board/leases.py); renewed with the heartbeat, a peer rescues the run
    # only once it has passed.
    lease_expires_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("job", "id"), False), (("outcome", "supervisor_id"), False))


class Event(BaseModel):
    """Something that happened to a job (or a schedule), with who did it.
    ``owner`` is denormalised so the change feed scopes like the job list."""

    job = peewee.ForeignKeyField(Job, null=True, backref="events", on_delete="CASCADE", index=False)
    job_id: int | None
    schedule = peewee.ForeignKeyField(
        Schedule, null=True, backref="events", on_delete="CASCADE", index=False
    )
    schedule_id: int | None
    owner = peewee.ForeignKeyField(User, null=True, on_delete="CASCADE", index=False)
    owner_id: int | None
    kind = peewee.CharField(max_length=32)
    actor = peewee.CharField(max_length=100)
    message = peewee.TextField(default="")
    data = peewee.JSONField(default=dict)
    created_at = UTCDateTimeField()
    # Its place in the change feed, which follows commit order. On PostgreSQL,
    # set as its transaction commits (see migration ``_v7_event_positions``);
    # NULL on SQLite, whose writes are serialized, so its ids are the order.
    # Read it through :func:`crewboard.board.events.feed_position`.
    position = peewee.BigIntegerField(null=True, index=False)

    class Meta:
        indexes = ((("job", "id"), False), (("owner", "id"), False), (("schedule", "id"), False))


class Comment(BaseModel):
    job = peewee.ForeignKeyField(Job, backref="comments", on_delete="CASCADE", index=False)
    job_id: int
    author = peewee.ForeignKeyField(User, on_delete="CASCADE")
    author_id: int
    text = peewee.TextField()
    created_at = UTCDateTimeField()

    class Meta:
        indexes = ((("job", "id"), False),)


class ScheduleFire(BaseModel):
    """A fire time a schedule has dealt with. The unique key is what makes a
    fire spawn at most one crew, across restarts and supervisors."""

    schedule = peewee.ForeignKeyField(Schedule, backref="fires", on_delete="CASCADE", index=False)
    schedule_id: int
    fire_at = UTCDateTimeField()
    outcome = peewee.CharField(max_length=16)  # spawned | skipped
    missed = peewee.IntegerField(default=0)
    crew = peewee.ForeignKeyField(Crew, null=True, on_delete="SET NULL")
    crew_id: int | None
    created_at = UTCDateTimeField()

    class Meta:
        indexes = ((("schedule", "fire_at"), True),)


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # to be sent at next_attempt_at (again, after a failed attempt)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # given up: a day of failed attempts, or a target now refused


class WebhookSecret(BaseModel):
    """A user's webhook signing secret (``whsec_…``). Each user's deliveries
    are signed with their own, so no user can forge another's."""

    user = peewee.ForeignKeyField(User, on_delete="CASCADE", unique=True)
    user_id: int
    secret = peewee.CharField(max_length=100)
    created_at = UTCDateTimeField()
    # The secret it replaced, which still signs alongside it for a while after
    # a rotation, so receivers can be given the new one without a gap.
    previous_secret = peewee.CharField(max_length=100, null=True)


class WebhookDelivery(BaseModel):
    """One webhook POST to make, until it is delivered or given up on.

    ``next_attempt_at`` is both the retry time and the claim: a sender takes
    a due row by moving it a lease into the future, so a sender that dies
    mid-send leaves the row due again once the lease runs out."""

    message_id = peewee.CharField(max_length=64, unique=True)  # the webhook-id header
    # What was settled: "job:<event id>" or "crew:<event id>"; one delivery each.
    dedupe_key = peewee.CharField(max_length=64, unique=True)
    owner = peewee.ForeignKeyField(User, on_delete="CASCADE", index=False)
    owner_id: int
    # The job whose settling made it (for a crew's: the last job to settle).
    job = peewee.ForeignKeyField(Job, null=True, on_delete="SET NULL", index=False)
    job_id: int | None
    event_type = peewee.CharField(max_length=32)  # job.finished | crew.finished
    url = peewee.CharField(max_length=2048)
    body = peewee.TextField()  # the exact JSON sent on every attempt
    status = peewee.CharField(max_length=16, default=DeliveryStatus.PENDING)
    attempts = peewee.IntegerField(default=0)
    next_attempt_at = UTCDateTimeField()
    claimed_by = peewee.CharField(max_length=100, null=True)
    last_error = peewee.TextField(null=True)
    created_at = UTCDateTimeField()
    finished_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("status", "next_attempt_at"), False), (("job", "id"), False))


class LoginThrottle(BaseModel):
    """One sign-in rate limit's state: for a client address, an account, or
    the pair of them (``key`` is a hash of which). ``free_at`` is the
    limit's theoretical arrival time (GCRA) in seconds since the epoch: each
    attempt moves it one interval on, and the limit is reached while it lies
    more than the window's tolerance ahead. A row whose ``free_at`` has
    passed holds nothing and may be deleted."""

    key = peewee.CharField(max_length=64, unique=True)
    # Double precision: PostgreSQL's REAL (peewee's FloatField) would round
    # epoch seconds to minutes.
    free_at = peewee.DoubleField(index=True)


class OAuthSpentState(BaseModel):
    """A sign-in flow's ``state`` already presented back by the provider,
    kept until its flow would have expired anyway, so that no web node
    accepts it a second time. ``key`` is a hash of the state; ``forget_at``
    is in seconds since the epoch."""

    key = peewee.CharField(max_length=64, unique=True)
    # Double precision, as LoginThrottle.free_at.
    forget_at = peewee.DoubleField(index=True)

    class Meta:
        table_name = "oauth_spent_state"


class RunArtifact(BaseModel):
    """A file a run saved, kept in the board so every web node can serve it
    (PostgreSQL only: ``board/artifacts.py`` says why and how). ``data`` is
    the file's bytes, read back in slices."""

    run = peewee.ForeignKeyField(Run, backref="stored_artifacts", on_delete="CASCADE", index=False)
    run_id: int
    name = peewee.CharField(max_length=255)
    size = peewee.BigIntegerField()
    data = peewee.BlobField()
    created_at = UTCDateTimeField()

    class Meta:
        indexes = ((("run", "name"), True),)


class LogRecord(BaseModel):
    """One record of a run's or chat session's log, as its writer's host
    shipped it to a PostgreSQL board (:mod:`crewboard.board.records`), so
    any node can stream it. ``log_key`` names the log (``run:<id>``,
    ``chat:<id>``), ``seq`` is the record's effective seq, ``body`` the
    record as JSON text. The run or session owning the log holds its rows:
    deleting either deletes them."""

    log_key = peewee.CharField(max_length=40)
    seq = peewee.IntegerField()
    run = peewee.ForeignKeyField(Run, null=True, on_delete="CASCADE")
    run_id: int | None
    session = peewee.ForeignKeyField(ChatSession, null=True, on_delete="CASCADE")
    session_id: int | None
    body = peewee.TextField()

    class Meta:
        primary_key = peewee.CompositeKey("log_key", "seq")


ALL_MODELS: list[type[BaseModel]] = [
    Meta,
    User,
    AuthSession,
    ApiToken,
    ChatSession,
    Schedule,
    Crew,
    Job,
    JobEdge,
    Heartbeat,
    Run,
    Event,
    Comment,
    ScheduleFire,
    WebhookSecret,
    WebhookDelivery,
    LoginThrottle,
    OAuthSpentState,
    RunArtifact,
    LogRecord,
]
