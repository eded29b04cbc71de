"""an index on the accounts' owner: an owner's accounts without reading the whole unique index

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 04:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_ledger_accounts_owner_type_owner_id",
        "ledger_accounts",
        ["owner_type", "owner_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_accounts_owner_type_owner_id", table_name="ledger_accounts")
