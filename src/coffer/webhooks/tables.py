"""The inbox: every provider event, stored before it is acted on."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from coffer.db.base import UTCDateTime, metadata

inbox = Table(
    "webhook_inbox",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("provider", String(16), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("provider_type", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("event", Text, nullable=False),  # the provider-neutral event, JSON
    Column("raw_body", LargeBinary, nullable=False),  # exactly as received and verified
    Column("status", String(16), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("processed_at", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", String(500), nullable=True),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    UniqueConstraint("provider", "event_id", name="uq_webhook_inbox_event"),
    CheckConstraint(
        "status IN ('received', 'processed', 'ignored', 'failed')", name="status_known"
    ),
    Index("ix_webhook_inbox_due", "status", "next_attempt_at"),
    Index("ix_webhook_inbox_received_at", "received_at"),
)
