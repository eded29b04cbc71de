"""event retention: the horizon below which events were purged

Revision ID: 0011
Revises: 0006
Create Date: 2026-12-03 08:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_retention",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("purged_through_id", sa.BigInteger(), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_retention")),
    )


def downgrade() -> None:
    op.drop_table("event_retention")
