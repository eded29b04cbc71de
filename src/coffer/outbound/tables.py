"""Outbound webhooks: the host app's endpoints, one delivery per (endpoint, event), each attempt."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from coffer.db.base import UTCDateTime, metadata

endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(32), primary_key=True),  # we_... (time-ordered)
    Column("url", String(2048), nullable=False),
    Column("event_types", Text, nullable=False),  # JSON list of event types, or ["*"]
    Column("status", String(16), nullable=False),  # enabled | disabled
    Column("disabled_reason", String(255), nullable=True),
    # The signing secret (`whsec_` + base64): kept as is, since every delivery is signed with it.
    Column("secret", String(128), nullable=False),
    # After a rotation the old secret signs too, until it expires (two `v1,` signatures).
    Column("previous_secret", String(128), nullable=True),
    Column("previous_secret_expires_at", UTCDateTime, nullable=True),
    # The fan-out cursor: every event with an id up to this one has its delivery row (or was not
    # one of the endpoint's types). Frozen while the endpoint is disabled.
    Column("last_event_id", BigInteger, nullable=False, server_default=text("0")),
    # After a 429 or a 5xx the endpoint gets nothing until then (its Retry-After, honoured).
    Column("throttled_until", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("status IN ('enabled', 'disabled')", name="status_known"),
    Index("ix_webhook_endpoints_created", "created_at", "id"),
)

deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(32), primary_key=True),  # whd_...
    Column("endpoint_id", String(32), ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("event_id", BigInteger, nullable=False),  # events.id, the outbox row it carries
    Column("event_type", String(64), nullable=False),
    # `webhook-id`: the same for every attempt and resend of one event, so receivers dedupe.
    Column("message_id", String(64), nullable=False),
    Column("payload", Text, nullable=False),  # the exact body sent (and signed), JSON
    Column("status", String(16), nullable=False),  # pending | succeeded | failed
    # Attempts in the current round (a resend or a recovery starts a new round at 0): the
    # position in the retry schedule. Every attempt ever made is in webhook_attempts.
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", UTCDateTime, nullable=True),  # set while pending
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("succeeded_at", UTCDateTime, nullable=True),
    UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
    CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status_known"),
    CheckConstraint("attempts >= 0", name="attempts_counted"),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at", "id"),
    Index("ix_webhook_deliveries_created", "created_at", "id"),
)

attempts = Table(
    "webhook_attempts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("delivery_id", String(32), ForeignKey("webhook_deliveries.id"), nullable=False),
    Column("attempted_at", UTCDateTime, nullable=False),
    # Its place in its round: 1 is a delivery's first try (or a resend's, or a recovery's).
    Column("attempt_number", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),  # None: no answer (refused, timed out)
    Column("latency_ms", Integer, nullable=False),  # from sending to the answer's headers
    Column("error", String(255), nullable=True),
    CheckConstraint("latency_ms >= 0", name="latency_known"),
    CheckConstraint("attempt_number >= 1", name="attempt_number_counted"),
    Index("ix_webhook_attempts_delivery", "delivery_id", "id"),
    Index("ix_webhook_attempts_attempted", "attempted_at"),
)
