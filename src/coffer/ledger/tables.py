"""The ledger's tables. It owns them; nothing else in Coffer writes to them.

Amounts and counters are BIGINT counts of an asset's minor units. The rules the code enforces are
repeated here as CHECK constraints (STYLE habit 8), so a bug cannot write an overdraft either.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every database (SQLite keeps no zone; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert value.tzinfo is not None, "naive datetimes never reach the database"
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


assets = Table(
    "ledger_assets",
    metadata,
    Column("code", String(16), primary_key=True),
    Column("scale", SmallInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("scale >= 0 AND scale <= 18", name="scale_range"),
)

accounts = Table(
    "ledger_accounts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("asset", String(16), ForeignKey("ledger_assets.code"), nullable=False),
    Column("owner_type", String(16), nullable=False),
    Column("owner_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("flags", Integer, nullable=False, server_default=text("0")),
    # Counters in minor units (TigerBeetle's four). They only ever grow, except the pending pair.
    Column("debits_posted", BigInteger, nullable=False, server_default=text("0")),
    Column("credits_posted", BigInteger, nullable=False, server_default=text("0")),
    Column("debits_pending", BigInteger, nullable=False, server_default=text("0")),
    Column("credits_pending", BigInteger, nullable=False, server_default=text("0")),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("asset", "owner_type", "owner_id", "kind", name="uq_ledger_accounts_owner"),
    # An owner's accounts (a balance, a statement): the unique key leads with the asset, so it
    # cannot find them without reading the whole index.
    Index("ix_ledger_accounts_owner_type_owner_id", "owner_type", "owner_id"),
    CheckConstraint(
        "debits_posted >= 0 AND credits_posted >= 0"
        " AND debits_pending >= 0 AND credits_pending >= 0",
        name="counters_non_negative",
    ),
    CheckConstraint(
        "(flags & 1) = 0 OR credits_posted - debits_posted - debits_pending >= 0",
        name="no_overdraft",
    ),
    CheckConstraint(
        "(flags & 2) = 0 OR debits_posted - credits_posted - credits_pending >= 0",
        name="no_overcredit",
    ),
)

transfers = Table(
    "ledger_transfers",
    metadata,
    # Gap-free and in commit order: assigned from the chain head, which every writer takes.
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("group_id", BigInteger, nullable=False),  # the first id of its linked group
    Column("debit_account_id", BigInteger, ForeignKey("ledger_accounts.id"), nullable=False),
    Column("credit_account_id", BigInteger, ForeignKey("ledger_accounts.id"), nullable=False),
    Column("asset", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),  # minor units
    Column("type", String(32), nullable=False),
    Column("phase", String(16), nullable=False),
    Column("pending_id", BigInteger, ForeignKey("ledger_transfers.id"), nullable=True),
    Column("reversal_of", BigInteger, ForeignKey("ledger_transfers.id"), nullable=True),
    Column("idempotency_source", String(64), nullable=False),
    Column("idempotency_key", String(255), nullable=True),
    Column("metadata", Text, nullable=False),  # canonical JSON, hashed as stored
    Column("expires_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("debit_balance_after", BigInteger, nullable=False),
    Column("credit_balance_after", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
    CheckConstraint(
        "phase IN ('posted', 'pending', 'post_pending', 'void_pending', 'expire_pending')",
        name="phase_known",
    ),
    # A hold is resolved at most once, whatever the code does.
    UniqueConstraint("pending_id", name="uq_ledger_transfers_pending_id"),
    UniqueConstraint(
        "idempotency_source", "idempotency_key", name="uq_ledger_transfers_idempotency"
    ),
    Index("ix_ledger_transfers_debit", "debit_account_id", "id"),
    Index("ix_ledger_transfers_credit", "credit_account_id", "id"),
    Index("ix_ledger_transfers_created_at", "created_at"),
    Index(
        "ix_ledger_transfers_reversal_of",
        "reversal_of",
        postgresql_where=text("reversal_of IS NOT NULL"),
        sqlite_where=text("reversal_of IS NOT NULL"),
    ),
)

holds = Table(
    "ledger_holds",
    metadata,
    Column("id", BigInteger, ForeignKey("ledger_transfers.id"), primary_key=True),
    Column("debit_account_id", BigInteger, ForeignKey("ledger_accounts.id"), nullable=False),
    Column("credit_account_id", BigInteger, ForeignKey("ledger_accounts.id"), nullable=False),
    Column("asset", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("type", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("resolved_by", BigInteger, ForeignKey("ledger_transfers.id"), nullable=True),
    Column("resolved_at", UTCDateTime, nullable=True),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("status IN ('open', 'posted', 'voided', 'expired')", name="status_known"),
    CheckConstraint("(status = 'open') = (resolved_by IS NULL)", name="resolved_iff_closed"),
    # The sweep and expiry-on-touch look only at open holds; keep that index small.
    Index(
        "ix_ledger_holds_open_expiry",
        "expires_at",
        postgresql_where=text("status = 'open'"),
        sqlite_where=text("status = 'open'"),
    ),
    Index(
        "ix_ledger_holds_open_debit",
        "debit_account_id",
        postgresql_where=text("status = 'open'"),
        sqlite_where=text("status = 'open'"),
    ),
)

# Running totals, kept by the same batch that writes the transfers (under the chain head), so
# a summary reads a few rows however long the history is. `verify` recomputes both.
# Per account, per transfer type and phase: what went out (debit) and came in (credit).
account_totals = Table(
    "ledger_account_totals",
    metadata,
    Column("account_id", BigInteger, ForeignKey("ledger_accounts.id"), primary_key=True),
    Column("type", String(32), primary_key=True),
    Column("phase", String(16), primary_key=True),
    Column("debit_count", BigInteger, nullable=False),
    Column("debit_amount", BigInteger, nullable=False),
    Column("credit_count", BigInteger, nullable=False),
    Column("credit_amount", BigInteger, nullable=False),
    CheckConstraint(
        "debit_count >= 0 AND debit_amount >= 0 AND credit_count >= 0 AND credit_amount >= 0",
        name="non_negative",
    ),
)

# Per UTC day, asset, type and phase: how many transfers and how much they moved.
daily_totals = Table(
    "ledger_daily_totals",
    metadata,
    Column("day", Date, primary_key=True),
    Column("asset", String(16), primary_key=True),
    Column("type", String(32), primary_key=True),
    Column("phase", String(16), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    CheckConstraint("count >= 0 AND amount >= 0", name="non_negative"),
)

# One row: the head of the hash chain and the last transfer id. Every ledger write takes it
# first, which orders all writers (a global ledger lock held for one batch), so ids are gap-free,
# timestamps never go backwards and the chain is a single line.
chain = Table(
    "ledger_chain",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("last_transfer_id", BigInteger, nullable=False),
    Column("last_hash", LargeBinary(32), nullable=False),
    Column("last_created_at", UTCDateTime, nullable=True),
    CheckConstraint("id = 1", name="single_row"),
)

CHAIN_ROW_ID = 1
GENESIS_HASH = bytes(32)
