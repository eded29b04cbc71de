"""Subscriptions and the periods they paid for. Amounts are BIGINT minor units of the plan's
currency (DIAMOND for a plan paid from the wallet)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    String,
    Table,
    UniqueConstraint,
)

from coffer.db.base import UTCDateTime, metadata

STATUSES = ("pending", "active", "past_due", "canceled", "expired")
LIVE_STATUSES = ("pending", "active", "past_due")

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(32), primary_key=True),  # sub_...
    Column("user_id", String(64), nullable=False),
    # The user's id while the subscription is live (pending, active, past_due), else NULL: the
    # unique constraint on it is "one live subscription per user", on both databases.
    Column("live_user_id", String(64), nullable=True),
    Column("plan_id", String(64), nullable=False),
    Column("interval", String(8), nullable=False),  # month | year
    Column("price", BigInteger, nullable=False),  # minor units of `currency`, each period
    Column("currency", String(16), nullable=False),
    Column("pay_with", String(8), nullable=False),  # wallet | provider
    Column("provider", String(16), nullable=True),  # None when paid from the wallet
    Column("provider_subscription_id", String(64), nullable=True),
    Column("provider_customer_id", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    # Periods run from `anchor_at` in whole intervals; `periods_paid` of them are booked.
    Column("anchor_at", UTCDateTime, nullable=True),  # None until the first period is paid
    Column("periods_paid", BigInteger, nullable=False),
    Column("current_period_end", UTCDateTime, nullable=True),
    Column("paid_through", UTCDateTime, nullable=True),  # access lasts until then
    Column("cancel_at_period_end", Boolean, nullable=False),
    # The renewal job's next try (wallet plans) and the failed tries of the period due.
    Column("next_charge_at", UTCDateTime, nullable=True),
    Column("failed_attempts", BigInteger, nullable=False),
    Column("last_failure", String(255), nullable=True),
    # A renewal job's claim on the row (taken FOR UPDATE SKIP LOCKED on PostgreSQL).
    Column("claimed_until", UTCDateTime, nullable=True),
    Column("canceled_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint(
        "status IN ('pending', 'active', 'past_due', 'canceled', 'expired')", name="status_known"
    ),
    CheckConstraint("pay_with IN ('wallet', 'provider')", name="pay_with_known"),
    CheckConstraint("price > 0 AND periods_paid >= 0 AND failed_attempts >= 0", name="counts"),
    CheckConstraint(
        "(pay_with = 'wallet' AND provider IS NULL) OR (pay_with = 'provider' AND provider IS NOT"
        " NULL AND provider_subscription_id IS NOT NULL)",
        name="provider_matches",
    ),
    UniqueConstraint("live_user_id", name="one_live_per_user"),
    UniqueConstraint("provider", "provider_subscription_id", name="provider_subscription"),
    Index("ix_subscriptions_due", "status", "next_charge_at"),
    Index("ix_subscriptions_user", "user_id", "created_at"),
    Index("ix_subscriptions_created_at", "created_at"),
)

# One row per period booked on the ledger: its start is the period's identity, so a renewal
# run twice or a webhook delivered twice (or after a later one) books it once.
subscription_periods = Table(
    "subscription_periods",
    metadata,
    Column(
        "subscription_id",
        String(32),
        ForeignKey("subscriptions.id", ondelete="RESTRICT"),
        primary_key=True,
    ),
    Column("period_start", UTCDateTime, primary_key=True),
    Column("period_end", UTCDateTime, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(16), nullable=False),
    Column("transfer_id", BigInteger, nullable=False),
    Column("via", String(16), nullable=False),  # wallet | webhook
    Column("provider_payment_id", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("period_end > period_start", name="period_forward"),
)
