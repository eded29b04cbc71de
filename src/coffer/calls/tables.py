"""Calls and call rates. Amounts are BIGINT minor units of the call's asset."""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, String, Table

from coffer.db.base import UTCDateTime, metadata

calls = Table(
    "calls",
    metadata,
    Column("id", String(32), primary_key=True),  # call_...
    Column("caller_id", String(64), nullable=False),
    Column("host_id", String(64), nullable=False),
    Column("asset", String(16), nullable=False),
    Column("rate_per_minute", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # active | ended | expired
    # The call's one open hold on the caller's wallet: an extension replaces it with a larger one
    # (voided and re-held in one linked group), so no part of the call can expire on its own.
    Column("hold_id", BigInteger, nullable=False),
    Column("hold_amount", BigInteger, nullable=False),
    Column("authorized_seconds", BigInteger, nullable=False),
    Column("extensions", BigInteger, nullable=False),
    Column("duration_s", BigInteger, nullable=True),
    Column("cost", BigInteger, nullable=True),
    Column("host_amount", BigInteger, nullable=True),
    Column("agency_amount", BigInteger, nullable=True),
    Column("platform_amount", BigInteger, nullable=True),
    Column("agency_id", String(64), nullable=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),  # when the hold lapses by itself
    Column("warned_at", UTCDateTime, nullable=True),  # "authorised time nearly used" sent
    Column("ended_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("status IN ('active', 'ended', 'expired')", name="status_known"),
    CheckConstraint("rate_per_minute > 0 AND hold_amount > 0", name="amounts_positive"),
    CheckConstraint("cost IS NULL OR cost <= hold_amount", name="cost_within_hold"),
    Index("ix_calls_status_expires", "status", "expires_at"),
    Index("ix_calls_caller", "caller_id", "started_at"),
    Index("ix_calls_host", "host_id", "started_at"),
)

# The per-minute rate: one global row (host_id '*') and any host's own.
call_rates = Table(
    "call_rates",
    metadata,
    Column("host_id", String(64), primary_key=True),
    Column("asset", String(16), nullable=False),
    Column("rate_per_minute", BigInteger, nullable=False),
    Column("updated_by", String(80), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("rate_per_minute > 0", name="rate_positive"),
)
