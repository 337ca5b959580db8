"""Alembic environment: migrate the database of the current Flask app (Flask-Migrate)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from flask import current_app

db = current_app.extensions["migrate"].db

#: PostgreSQL advisory lock held while migrating: pods that start together and each run
#: `flask db upgrade` (the chart's init containers) take turns; the later ones find the schema
#: at head and do nothing.
MIGRATION_LOCK = 0x666C61736B  # "flask"


def run_migrations_offline() -> None:
    """Emit SQL for the configured URL without connecting (`flask db upgrade --sql`)."""
    url = db.engine.url.render_as_string(hide_password=False)
    context.configure(url=url, target_metadata=db.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply migrations over a connection from the app's engine."""
    with db.engine.connect() as connection:
        locked = connection.dialect.name == "postgresql"
        if locked:
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=db.metadata,
                **current_app.extensions["migrate"].configure_args,
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            # a session lock outlives the transaction: released here, not when the pooled
            # connection is next closed, or a second migration in this process would wait forever
            if locked:
                connection.execute(
                    sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK}
                )
                connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
