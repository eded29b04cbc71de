"""Escrows. Amounts are BIGINT minor units of the escrow's currency."""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Integer, String, Table

from coffer.db.base import UTCDateTime, metadata

STATUSES = (
    "pending",  # its payment order is open: nothing held yet
    "held",
    "partially_released",
    "released",
    "disputed",
    "refunding",  # a refund of what is left is with the provider
    "refunded",
)

escrows = Table(
    "escrows",
    metadata,
    Column("id", String(32), primary_key=True),  # esc_...
    Column("payer_id", String(64), nullable=False),
    Column("payee_id", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(16), nullable=False),
    Column("fee_bps", Integer, nullable=False),  # the platform's fee, fixed when it is opened
    Column("status", String(24), nullable=False),
    Column("reference", String(128), nullable=True),
    Column("order_id", String(64), nullable=False, unique=True),  # the funding payment order
    # The escrow's own ledger account (no overdraft): what it holds is its balance, so a release
    # or a refund can never take out more than was paid in.
    Column("account_id", BigInteger, nullable=True),
    Column("released_amount", BigInteger, nullable=False),  # gross: the payee's share and fees
    Column("fee_amount", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    Column("refund_id", String(64), nullable=True),  # the refund in flight or last made
    Column("status_before", String(24), nullable=True),  # where a refund in flight came from
    Column("auto_release_at", UTCDateTime, nullable=True),
    Column("dispute_reason", String(255), nullable=True),
    Column("disputed_by", String(16), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("held_at", UTCDateTime, nullable=True),
    CheckConstraint(
        "status IN ('pending', 'held', 'partially_released', 'released', 'disputed', "
        "'refunding', 'refunded')",
        name="status_known",
    ),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("fee_bps >= 0 AND fee_bps <= 10000", name="fee_bps_range"),
    CheckConstraint(
        "released_amount >= 0 AND refunded_amount >= 0 AND fee_amount >= 0 "
        "AND fee_amount <= released_amount AND released_amount + refunded_amount <= amount",
        name="within_amount",
    ),
    Index("ix_escrows_payer", "payer_id", "created_at"),
    Index("ix_escrows_payee", "payee_id", "created_at"),
    Index("ix_escrows_status_release", "status", "auto_release_at"),
)
