"""Users and agencies. Their money lives in ledger accounts, never in these rows."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, ForeignKey, Integer, String, Table

from coffer.db.base import UTCDateTime, metadata

agencies = Table(
    "agencies",
    metadata,
    Column("id", String(64), primary_key=True),  # the host app's id for the agency
    Column("name", String(128), nullable=False),
    # The agency's share of its hosts' gifts and calls, in basis points (1000 = 10 %).
    Column("commission_bps", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("commission_bps >= 0 AND commission_bps <= 10000", name="commission_bps_range"),
)

users = Table(
    "users",
    metadata,
    Column("id", String(64), primary_key=True),  # the host app's id for the user
    Column("display_name", String(128), nullable=True),
    Column("agency_id", String(64), ForeignKey("agencies.id"), nullable=True, index=True),
    # Frozen by an operator when set: the wallet receives but may not spend or pay out
    # (`service.check_may_spend`). The reason and the key that froze it are kept with it, and
    # every freeze and unfreeze is in the audit trail.
    Column("frozen_at", UTCDateTime, nullable=True),
    Column("frozen_reason", String(500), nullable=True),
    Column("frozen_by", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
