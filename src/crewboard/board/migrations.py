"""Schema versions of board.db, applied in order at start.

Each migration is a function of the database, run inside one write
transaction together with the version bump, so two processes starting at once
(``crewboard serve`` starts two) apply it exactly once. Add a migration by
appending a function; never edit one that has shipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import peewee
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as migrate_schema

from crewboard.board import models, notify

log = logging.getLogger(__name__)


def _v1_initial(db: peewee.Database) -> None:
    db.create_tables(models.ALL_MODELS, safe=True)


def _v2_one_live_run_per_job(db: peewee.Database) -> None:
    """ "A job never has two live runs" as a constraint, not only a guarded
    update: a second running run for a job fails to insert."""
    db.execute_sql(
        'CREATE UNIQUE INDEX IF NOT EXISTS "run_one_live_per_job" '
        'ON "run" ("job_id") WHERE "outcome" = \'running\''
    )


def _v3_token_expiry(db: peewee.Database) -> None:
    """API tokens may expire: ``api_token.expires_at`` (NULL: until revoked).
    A board made by this version's ``_v1_initial`` has it already."""
    table = models.ApiToken._meta.table_name
    if "expires_at" in {column.name for column in db.get_columns(table)}:
        return
    migrator = SchemaMigrator.from_database(db)
    migrate_schema(migrator.add_column(table, "expires_at", models.ApiToken.expires_at))


def _v4_webhooks(db: peewee.Database) -> None:
    """Webhooks: a URL on crews and schedules, each user's signing secret and
    the deliveries the supervisor sends."""
    for model in (models.Crew, models.Schedule):
        table = model._meta.table_name
        if "webhook_url" not in {c.name for c in db.get_columns(table)}:
            db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "webhook_url" VARCHAR(2048)')
    db.create_tables([models.WebhookSecret, models.WebhookDelivery], safe=True)


def _v5_job_request_id(db: peewee.Database) -> None:
    """The id of the request that created a job, for its runs' log lines."""
    columns = {c.name for c in db.get_columns(models.Job._meta.table_name)}
    if "request_id" not in columns:
        migrator = SchemaMigrator.from_database(db)
        migrate_schema(migrator.add_column("job", "request_id", models.Job.request_id))


def _v6_login_throttle(db: peewee.Database) -> None:
    """Sign-in limits kept in the board, so every web process shares them."""
    db.create_tables([models.LoginThrottle], safe=True)


def _v7_run_leases(db: peewee.Database) -> None:
    """Runs held by a lease their supervisor renews (``run.lease_expires_at``),
    and the host identity a heartbeat's pid belongs to. A run live before
    this version has no lease: it is rescued as before, once its supervisor's
    heartbeat is stale."""
    migrator = SchemaMigrator.from_database(db)
    run_columns = {c.name for c in db.get_columns(models.Run._meta.table_name)}
    if "lease_expires_at" not in run_columns:
        migrate_schema(migrator.add_column("run", "lease_expires_at", models.Run.lease_expires_at))
    beat_columns = {c.name for c in db.get_columns(models.Heartbeat._meta.table_name)}
    if "host_identity" not in beat_columns:
        migrate_schema(
            migrator.add_column("heartbeat", "host_identity", models.Heartbeat.host_identity)
        )


def _v8_oauth_spent_states(db: peewee.Database) -> None:
    """Sign-in flow states already used, kept in the board, so that every
    web process refuses a replayed one."""
    db.create_tables([models.OAuthSpentState], safe=True)


def _v9_run_artifacts(db: peewee.Database) -> None:
    """Runs' saved files kept in the board, so every web node of a shared
    PostgreSQL board serves them. Their bytes are stored uncompressed out of
    line, so reading a slice reads only that slice."""
    db.create_tables([models.RunArtifact], safe=True)
    if isinstance(db, peewee.PostgresqlDatabase):
        table = models.RunArtifact._meta.table_name
        db.execute_sql(f'ALTER TABLE "{table}" ALTER COLUMN "data" SET STORAGE EXTERNAL')


def _v10_event_positions(db: peewee.Database) -> None:
    """Each event's place in the change feed, in commit order.

    On PostgreSQL ids are taken when a row is inserted but become visible
    when its transaction commits, and transactions commit in any order: a
    feed that pages by id and has passed id 12 never sees an 11 that commits
    after 12. So each event gets ``position`` from a sequence *as its
    transaction commits*: a deferred constraint trigger fires at commit,
    takes a transaction-level advisory lock (held until the commit is
    visible, so the next event-writing commit numbers after it) and numbers
    the transaction's events in insertion order. A follower that has read up
    to a position has seen every event below it, for good. Each event is
    written a second time, in the commit; PostgreSQL already serializes the
    commits of transactions that notify (the trigger also notifies
    ``notify.BOARD``, so every node's followers look again), so the lock
    adds no queue of its own.

    A transaction-id watermark (``pg_snapshot_xmin``) needs no second
    write, but any long transaction on the board, even one writing no
    event, would hold every feed back until it ends.

    SQLite serializes its writers, so its ids already follow commit order:
    the column stays NULL there and the feed reads ids."""
    if "position" not in {c.name for c in db.get_columns(models.Event._meta.table_name)}:
        db.execute_sql('ALTER TABLE "event" ADD COLUMN "position" BIGINT')
    if not isinstance(db, peewee.PostgresqlDatabase):
        return
    db.execute_sql("CREATE SEQUENCE IF NOT EXISTS event_position_seq")
    # Events from before keep their ids as positions: a client resuming the
    # feed with an id it got before the upgrade resumes in the right place.
    db.execute_sql('UPDATE "event" SET "position" = "id" WHERE "position" IS NULL')
    db.execute_sql(
        "SELECT setval('event_position_seq', "
        'COALESCE((SELECT MAX("position") FROM "event"), 0) + 1, false)'
    )
    db.execute_sql('CREATE UNIQUE INDEX IF NOT EXISTS "event_position" ON "event" ("position")')
    db.execute_sql(
        'CREATE INDEX IF NOT EXISTS "event_owner_position" ON "event" ("owner_id", "position")'
    )
    db.execute_sql(
        f"""
        CREATE OR REPLACE FUNCTION event_position_at_commit() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock(hashtext('crewboard event position'));
            UPDATE "event" SET "position" = nextval('event_position_seq') WHERE "id" = NEW."id";
            PERFORM pg_notify('{notify.BOARD}', '');
            RETURN NULL;
        END
        $$
        """
    )
    db.execute_sql('DROP TRIGGER IF EXISTS "event_position_at_commit" ON "event"')
    db.execute_sql(
        'CREATE CONSTRAINT TRIGGER "event_position_at_commit" AFTER INSERT ON "event" '
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION event_position_at_commit()"
    )


def _v11_log_records(db: peewee.Database) -> None:
    """Run and chat records in the board, so any web node streams any run."""
    db.create_tables([models.LogRecord], safe=True)


MIGRATIONS: list[Callable[[peewee.Database], None]] = [
    _v1_initial,
    _v2_one_live_run_per_job,
    _v3_token_expiry,
    _v4_webhooks,
    _v5_job_request_id,
    _v6_login_throttle,
    _v7_run_leases,
    _v8_oauth_spent_states,
    _v9_run_artifacts,
    _v10_event_positions,
    _v11_log_records,
]
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(db: peewee.Database) -> int:
    if not db.table_exists(models.Meta._meta.table_name):
        return 0
    row = models.Meta.get_or_none(models.Meta.key == "schema_version")
    return int(row.value) if row else 0


def migrate(db: peewee.Database) -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION`; returns the version."""
    with db.atomic():
        if isinstance(db, peewee.PostgresqlDatabase):
            # A migration may rewrite a large table, and a node starting
            # meanwhile waits for it: neither is held to the statement timeout.
            db.execute_sql("SET LOCAL statement_timeout = 0")
            db.execute_sql("SELECT pg_advisory_xact_lock(4242)")
        version = current_version(db)
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"board.db has schema version {version}, newer than this crewboard "
                f"understands ({SCHEMA_VERSION}); upgrade crewboard"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            log.info("applying board migration %d", number)
            MIGRATIONS[number - 1](db)
            models.Meta.insert(key="schema_version", value=str(number)).on_conflict(
                conflict_target=[models.Meta.key], update={models.Meta.value: str(number)}
            ).execute()
    return SCHEMA_VERSION
