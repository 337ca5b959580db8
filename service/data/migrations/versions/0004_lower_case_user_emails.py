"""User emails lower-cased, so that their unique constraint is case-insensitive.

The API stores every new email lower-cased; this brings the rows written before it in line.
Two users whose emails differ only in case cannot both keep theirs: the upgrade then stops and
names them, to be resolved by hand, and changes nothing.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:30:00.000000

"""

import sqlalchemy as sa
from alembic import context, op

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

users = sa.table("users", sa.column("email", sa.String(320)))


def upgrade() -> None:
    lowered = sa.func.lower(users.c.email)
    if not context.is_offline_mode():
        clashes = op.get_bind().scalars(
            sa.select(lowered).group_by(lowered).having(sa.func.count() > 1).order_by(lowered)
        )
        if names := ", ".join(clashes):
            raise RuntimeError(
                f"users whose emails differ only in case: {names}; give each user a distinct "
                "email, then upgrade again"
            )
    op.execute(users.update().where(users.c.email != lowered).values(email=lowered))


def downgrade() -> None:
    """Nothing to undo: the original case of an email is not kept, and is not needed."""
