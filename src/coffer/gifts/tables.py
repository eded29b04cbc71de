"""Gifts: one row per gift, beside the linked ledger group that moved its diamonds."""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, String, Table

from coffer.db.base import UTCDateTime, metadata

gifts = Table(
    "gifts",
    metadata,
    Column("id", String(32), primary_key=True),  # gift_...
    Column("sender_id", String(64), nullable=False),
    Column("receiver_id", String(64), nullable=False),
    Column("gift_type", String(64), nullable=True),  # None: a number of diamonds
    # Diamonds (the DIAMOND asset's minor unit): the whole gift and its three shares.
    Column("diamonds", BigInteger, nullable=False),
    Column("host_amount", BigInteger, nullable=False),
    Column("agency_amount", BigInteger, nullable=False),
    Column("platform_amount", BigInteger, nullable=False),
    Column("agency_id", String(64), nullable=True),
    Column("message", String(280), nullable=True),
    Column("call_id", String(64), nullable=True),
    # The first transfer of the gift's linked group (its legs are consecutive).
    Column("transfer_id", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("diamonds > 0", name="diamonds_positive"),
    CheckConstraint(
        "host_amount >= 0 AND agency_amount >= 0 AND platform_amount >= 0"
        " AND host_amount + agency_amount + platform_amount = diamonds",
        name="shares_add_up",
    ),
    Index("ix_gifts_sender", "sender_id", "created_at"),
    Index("ix_gifts_receiver", "receiver_id", "created_at"),
    Index("ix_gifts_created_at", "created_at"),
)
