"""Alerts for the operator (a dispute, a provider-side refund, a failed reconciliation)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    text,
)

from coffer.db.base import UTCDateTime, metadata

alerts = Table(
    "alerts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("kind", String(64), nullable=False),  # e.g. dispute.opened, refund.provider
    Column("severity", String(16), nullable=False),  # info | warning | critical
    Column("message", String(500), nullable=False),
    Column("details", Text, nullable=False, server_default=text("'{}'")),  # JSON
    Column("subject_id", String(128), nullable=True),  # the order, dispute or refund it is about
    Column("created_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime, nullable=True),
    CheckConstraint("severity IN ('info', 'warning', 'critical')", name="severity_known"),
    Index("ix_alerts_created_at", "created_at", "id"),
)
