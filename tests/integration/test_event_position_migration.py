"""A board made before the change feed followed commit order gains event
positions on its next start: a client resuming with an event id it got
before the upgrade resumes in the right place, and new events come after."""

from __future__ import annotations

import pytest

from crewboard.board import db, job_views, migrations
from crewboard.board.events import EventKind, record_event
from crewboard.board.models import Meta
from crewboard.clock import utcnow
from crewboard.home import Home


def _comment(message: str) -> int:
    with db.database.atomic():
        return record_event(EventKind.COMMENT, actor="supervisor", message=message, now=utcnow()).id


def _as_before_positions() -> None:
    """Take the board back to the schema it had before events had positions."""
    before = migrations.MIGRATIONS.index(migrations._v10_event_positions)
    if not db.is_sqlite():
        db.database.execute_sql('DROP TRIGGER "event_position_at_commit" ON "event"')
        db.database.execute_sql("DROP FUNCTION event_position_at_commit()")
        db.database.execute_sql("DROP SEQUENCE event_position_seq")
        db.database.execute_sql('DROP INDEX "event_position"')
        db.database.execute_sql('DROP INDEX "event_owner_position"')
    db.database.execute_sql('ALTER TABLE "event" DROP COLUMN "position"')
    Meta.update(value=str(before)).where(Meta.key == "schema_version").execute()


def _reopen(config) -> None:
    db.close()
    db.connect(Home(config.home).board_db, url=config.database_url)


def _upgrade_keeps_resumes(config) -> None:
    old = [_comment(f"old {n}") for n in range(3)]
    _as_before_positions()
    _reopen(config)
    assert migrations.current_version(db.database.obj) == migrations.SCHEMA_VERSION
    new = _comment("new")
    resumed = job_views.all_events_after(old[0])
    assert [e.message for e in resumed] == ["old 1", "old 2", "new"]
    assert [e.id for e in resumed[:2]] == old[1:]
    assert job_views.last_event_position() > old[-1] and new > old[-1]


@pytest.mark.sqlite_only("PostgreSQL's upgrade has a test of its own")
def test_an_older_board_gains_positions_that_resume_where_ids_left_off(home, config):
    _upgrade_keeps_resumes(config)


@pytest.mark.postgres
def test_an_older_postgresql_board_gains_positions_that_resume_where_ids_left_off(pg):
    config, _ = pg
    _upgrade_keeps_resumes(config)
    (event,) = job_views.all_events_after(job_views.last_event_position() - 1)
    assert event.message == "new" and event.position is not None
