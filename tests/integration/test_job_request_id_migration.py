"""A board made before jobs kept their request id gains the column on the
next start, its jobs intact (and without a request id)."""

from __future__ import annotations

from crewboard.board import db, migrations
from crewboard.board.models import Job, Meta
from crewboard.home import Home
from tests.support import crews


def test_an_older_board_gains_the_request_id_column(home, config):
    ids = crews.add_crew({"a": crews.JobDef()})
    before = migrations.MIGRATIONS.index(migrations._v5_job_request_id)
    db.database.execute_sql('ALTER TABLE "job" DROP COLUMN "request_id"')
    Meta.update(value=str(before)).where(Meta.key == "schema_version").execute()
    db.close()

    db.connect(Home(config.home).board_db, url=config.database_url)
    assert migrations.current_version(db.database.obj) == migrations.SCHEMA_VERSION
    job = Job.get_by_id(ids["a"])
    assert job.request_id is None and job.key == "a"
