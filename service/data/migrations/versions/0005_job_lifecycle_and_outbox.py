"""A job's row holds its state, its lifecycle's times and outcome, and what publishing needs.

Rows written before this revision were published when they were recorded (or removed), so they
read `queued` with no timestamps, no attempts and no arguments: the API then keeps reading their
state from the result backend, as before, and the outbox relay never picks them up (it
publishes `recorded` rows only).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 02:00:00.000000

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("state", sa.String(length=20), server_default="queued", nullable=False)
        )
        batch_op.add_column(sa.Column("task_args", JSON, nullable=True))
        batch_op.add_column(sa.Column("task_kwargs", JSON, nullable=True))
        batch_op.add_column(sa.Column("eta", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("result_summary", JSON, nullable=True))
        batch_op.create_index("ix_jobs_state_created_at", ["state", "created_at"], unique=False)
        batch_op.create_index("ix_jobs_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_created_at")
        batch_op.drop_index("ix_jobs_state_created_at")
        for column in (
            "result_summary",
            "last_error",
            "attempts",
            "finished_at",
            "started_at",
            "queued_at",
            "eta",
            "task_kwargs",
            "task_args",
            "state",
        ):
            batch_op.drop_column(column)
