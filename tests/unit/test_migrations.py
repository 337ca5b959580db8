"""Migrations: they build exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path

import flask_migrate
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service import create_app
from service.db import db


def test_migrations_match_the_models(tmp_path: Path) -> None:
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STORAGE_DIR": str(tmp_path / "storage"),
        }
    )
    with app.app_context():
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert diff == []


def test_downgrade_removes_every_table(tmp_path: Path) -> None:
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STORAGE_DIR": str(tmp_path / "storage"),
        }
    )
    with app.app_context():
        flask_migrate.upgrade()
        flask_migrate.downgrade(revision="base")
        tables = set(db.inspect(db.engine).get_table_names())
    assert tables <= {"alembic_version"}
