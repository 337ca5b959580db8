"""Migrations: they build exactly the schema the models describe, and undo it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service import create_app
from service.data.db import db


@pytest.fixture
def migrated(tmp_path: Path) -> Iterator[None]:
    """An app context on a fresh SQLite file with every migration applied."""
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STORAGE_DIR": str(tmp_path / "storage"),
        }
    )
    with app.app_context():
        flask_migrate.upgrade()
        yield


@pytest.mark.usefixtures("migrated")
def test_migrations_match_the_models() -> None:
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), db.metadata) == []


@pytest.mark.usefixtures("migrated")
def test_downgrade_removes_every_table() -> None:
    flask_migrate.downgrade(revision="base")
    assert set(db.inspect(db.engine).get_table_names()) <= {"alembic_version"}
