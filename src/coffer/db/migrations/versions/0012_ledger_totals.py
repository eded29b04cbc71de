"""ledger running totals: per account, type and phase; per UTC day, asset, type and phase

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 01:30:00.000000

Summaries (the admin transactions search, a user's ledger, the stats) read these few rows
instead of summing the history. The upgrade fills them from the transfers already there.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_account_totals",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("debit_count", sa.BigInteger(), nullable=False),
        sa.Column("debit_amount", sa.BigInteger(), nullable=False),
        sa.Column("credit_count", sa.BigInteger(), nullable=False),
        sa.Column("credit_amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "debit_count >= 0 AND debit_amount >= 0 AND credit_count >= 0 AND credit_amount >= 0",
            name=op.f("ck_ledger_account_totals_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_account_totals_account_id_ledger_accounts"),
        ),
        sa.PrimaryKeyConstraint(
            "account_id", "type", "phase", name=op.f("pk_ledger_account_totals")
        ),
    )
    op.create_table(
        "ledger_daily_totals",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("asset", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "count >= 0 AND amount >= 0", name=op.f("ck_ledger_daily_totals_non_negative")
        ),
        sa.PrimaryKeyConstraint(
            "day", "asset", "type", "phase", name=op.f("pk_ledger_daily_totals")
        ),
    )
    day = (
        "(created_at AT TIME ZONE 'UTC')::date"
        if op.get_bind().dialect.name == "postgresql"
        else "date(created_at)"
    )
    op.execute(
        """
        INSERT INTO ledger_account_totals
            (account_id, type, phase, debit_count, debit_amount, credit_count, credit_amount)
        SELECT account_id, type, phase, SUM(dc), SUM(da), SUM(cc), SUM(ca) FROM (
            SELECT debit_account_id AS account_id, type, phase,
                   COUNT(*) AS dc, SUM(amount) AS da, 0 AS cc, 0 AS ca
            FROM ledger_transfers GROUP BY debit_account_id, type, phase
            UNION ALL
            SELECT credit_account_id, type, phase, 0, 0, COUNT(*), SUM(amount)
            FROM ledger_transfers GROUP BY credit_account_id, type, phase
        ) sides
        GROUP BY account_id, type, phase
        """
    )
    op.execute(
        f"""
        INSERT INTO ledger_daily_totals (day, asset, type, phase, count, amount)
        SELECT {day}, asset, type, phase, COUNT(*), SUM(amount)
        FROM ledger_transfers GROUP BY {day}, asset, type, phase
        """  # noqa: S608 - the one interpolation is a fixed expression per dialect
    )


def downgrade() -> None:
    op.drop_table("ledger_daily_totals")
    op.drop_table("ledger_account_totals")
