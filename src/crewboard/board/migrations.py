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

from crewboard.board import models

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


def _v7_log_records(db: peewee.Database) -> None:
    """Run and chat records in the board, so any web node streams any run."""
    db.create_tables([models.LogRecord], safe=True)


MIGRATIONS: list[Callable[[peewee.Database], None]] = [
    _v1_initial,
    _v2_one_live_run_per_job,
    _v3_token_expiry,
    _v4_webhooks,
    _v5_job_request_id,
    _v6_login_throttle,
    _v7_log_records,
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
