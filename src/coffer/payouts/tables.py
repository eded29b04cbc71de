"""Payees and payouts. Amounts are BIGINT minor units (of `asset`, or of `payout_currency`)."""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, String, Table, Text, text

from coffer.db.base import UTCDateTime, metadata

# One payout destination per user: a `PUT /payees/me` replaces it.
payees = Table(
    "payees",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("provider", String(16), nullable=False),
    Column("status", String(16), nullable=False),  # pending | active | rejected
    Column("destination_type", String(16), nullable=False),  # bank_account | vpa | stripe_account
    # What may be shown back: the bank's IFSC and the account's last four, a VPA, a country.
    # The full account number is kept only by the provider.
    Column("destination", Text, nullable=False, server_default=text("'{}'")),  # JSON
    Column("provider_account_id", String(64), nullable=False),  # fa_..., acct_..., mock_fa_...
    Column("provider_contact_id", String(64), nullable=True),  # RazorpayX cont_...
    Column("requirements", Text, nullable=False, server_default=text("'[]'")),  # JSON list
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("status IN ('pending', 'active', 'rejected')", name="status_known"),
    Index("ix_payees_provider_account", "provider", "provider_account_id"),
)

payouts = Table(
    "payouts",
    metadata,
    Column("id", String(32), primary_key=True),  # pout_...
    Column("user_id", String(64), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("provider_account_id", String(64), nullable=False),  # the payee paid
    Column("destination_type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("asset", String(16), nullable=False),  # what left the earnings account
    Column("amount", BigInteger, nullable=False),  # minor units of `asset`
    Column("payout_currency", String(16), nullable=False),
    Column("payout_amount", BigInteger, nullable=False),  # minor units of `payout_currency`
    # `asset` minor units per major unit of `payout_currency` (100 💎 = ₹1 is 100).
    Column("rate", BigInteger, nullable=False),
    # Each attempt holds the amount anew and has its own provider idempotency key.
    Column("attempt", BigInteger, nullable=False, server_default=text("0")),
    Column("hold_id", BigInteger, nullable=False),  # this attempt's hold on earnings
    Column("post_transfer_id", BigInteger, nullable=True),  # the hold posted: paid
    Column("reversal_transfer_id", BigInteger, nullable=True),  # paid, then returned
    Column("provider_payout_id", String(64), nullable=True),
    Column("failure_reason", String(255), nullable=True),
    Column("retry_reason", String(255), nullable=True),
    Column("reconcile_attempts", BigInteger, nullable=False, server_default=text("0")),
    Column("next_check_at", UTCDateTime, nullable=False),  # the reconciler looks after this
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("settled_at", UTCDateTime, nullable=True),
    CheckConstraint(
        "status IN ('pending', 'processing', 'paid', 'failed', 'cancelled', 'reversed')",
        name="status_known",
    ),
    CheckConstraint("amount > 0 AND payout_amount > 0 AND rate > 0", name="amounts_positive"),
    CheckConstraint(
        "post_transfer_id IS NOT NULL OR status NOT IN ('paid', 'reversed')",
        name="paid_is_posted",
    ),
    Index("ix_payouts_user", "user_id", "created_at"),
    Index("ix_payouts_status_created", "status", "created_at"),
    Index("ix_payouts_status_check", "status", "next_check_at"),
    Index("ix_payouts_provider_payout", "provider", "provider_payout_id"),
)
