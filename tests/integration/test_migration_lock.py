"""Migrations on PostgreSQL hold their advisory lock only while they run.

Pods that start together serialise their migrations on that lock; one that kept it (on a
connection returned to the pool) would make the next migration in the same process, or a
`flask db upgrade` in a pod sharing that session, wait forever.
"""

from __future__ import annotations

from collections.abc import Iterator

import flask_migrate
import pytest
import sqlalchemy as sa

from harness.postgres import Postgres, postgres_bindir
from service import create_app
from service.data.db import db


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = Postgres(postgres_bindir()).start()
    yield server
    server.stop()


def advisory_locks(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            return int(connection.execute(sa.text(query)).scalar_one())
    finally:
        engine.dispose()


def test_a_migration_releases_its_lock_and_a_second_one_in_the_process_runs(
    postgres: Postgres,
) -> None:
    app = create_app({"SQLALCHEMY_DATABASE_URI": postgres.url})
    with app.app_context():
        flask_migrate.upgrade()
        # the pooled connection that took the lock is still open, and must not hold it
        assert advisory_locks(postgres.url) == 0
        flask_migrate.downgrade(revision="0003")
        flask_migrate.upgrade()
        assert db.session.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    assert advisory_locks(postgres.url) == 0
