"""Payment orders and refunds. Amounts are BIGINT minor units of the order's currency."""

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

payment_orders = Table(
    "payment_orders",
    metadata,
    Column("id", String(32), primary_key=True),  # pay_...
    Column("user_id", String(64), nullable=False),
    Column("purpose", String(16), nullable=False),  # topup | subscription | escrow
    Column("provider", String(16), nullable=False),
    Column("provider_order_id", String(128), nullable=True),
    Column("provider_payment_id", String(128), nullable=True),
    Column("status", String(24), nullable=False),
    Column("amount", BigInteger, nullable=False),  # minor units of `currency`
    Column("currency", String(16), nullable=False),
    Column("diamonds", BigInteger, nullable=False, server_default=text("0")),
    Column("bonus", BigInteger, nullable=False, server_default=text("0")),
    Column("package_id", String(64), nullable=True),
    Column("refunded_amount", BigInteger, nullable=False, server_default=text("0")),
    Column("refund_pending_amount", BigInteger, nullable=False, server_default=text("0")),
    Column("diamonds_clawed_back", BigInteger, nullable=False, server_default=text("0")),
    Column("failure_reason", String(255), nullable=True),
    # The ledger transfers that settled it: money in (provider clearing -> revenue) and the
    # diamonds credited to the wallet.
    Column("payment_transfer_id", BigInteger, nullable=True),
    Column("credit_transfer_id", BigInteger, nullable=True),
    Column("checkout", Text, nullable=False, server_default=text("'{}'")),  # JSON
    Column("metadata", Text, nullable=False, server_default=text("'{}'")),  # JSON
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("succeeded_at", UTCDateTime, nullable=True),
    UniqueConstraint("provider", "provider_order_id", name="uq_payment_orders_provider_order"),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("diamonds >= 0 AND bonus >= 0", name="diamonds_non_negative"),
    CheckConstraint(
        "refunded_amount >= 0 AND refund_pending_amount >= 0"
        " AND refunded_amount + refund_pending_amount <= amount",
        name="refunds_within_amount",
    ),
    CheckConstraint(
        "status IN ('created', 'pending', 'succeeded', 'failed', 'cancelled',"
        " 'partially_refunded', 'refunded')",
        name="status_known",
    ),
    Index("ix_payment_orders_user", "user_id", "created_at"),
    Index("ix_payment_orders_status", "status", "created_at"),
    Index("ix_payment_orders_created_at", "created_at"),
)

refunds = Table(
    "payment_refunds",
    metadata,
    Column("id", String(32), primary_key=True),  # re_...
    Column("order_id", String(32), ForeignKey("payment_orders.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),  # minor units of the order's currency
    Column("diamonds", BigInteger, nullable=False),  # clawed back from the wallet
    Column("shortfall_diamonds", BigInteger, nullable=False, server_default=text("0")),
    Column("reason", String(255), nullable=False),
    Column("forced", String(5), nullable=False, server_default=text("'false'")),
    Column("status", String(16), nullable=False),  # pending | succeeded | failed
    Column("provider_refund_id", String(128), nullable=True),
    Column("hold_id", BigInteger, nullable=True),  # the ledger hold reserving the diamonds
    Column("idempotency_key", String(255), nullable=True),
    Column("request_fingerprint", String(64), nullable=True),
    Column("failure_reason", String(255), nullable=True),
    # How often the reconciler asked the provider about it (bounded: see
    # refund_flows.reconcile_refunds).
    Column("reconcile_attempts", Integer, nullable=False, server_default=text("0")),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("diamonds >= 0 AND shortfall_diamonds >= 0", name="diamonds_non_negative"),
    CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status_known"),
    UniqueConstraint("order_id", "idempotency_key", name="uq_payment_refunds_key"),
    Index("ix_payment_refunds_order", "order_id"),
    Index("ix_payment_refunds_provider_id", "provider_refund_id"),
)

# Money the provider took back on its own: a chargeback (`kind` dispute) or a refund made in the
# provider's dashboard (`kind` provider_refund). Each claws back through a refund row of its own
# (`refund_id`): reserved while open, booked when lost or final, released when won.
disputes = Table(
    "payment_disputes",
    metadata,
    Column("id", String(32), primary_key=True),  # dsp_...
    Column("order_id", String(32), ForeignKey("payment_orders.id"), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("provider_dispute_id", String(128), nullable=False),  # dp_/disp_, or the refund id
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),  # minor units of the order's currency
    Column("currency", String(16), nullable=False),
    Column("diamonds", BigInteger, nullable=False, server_default=text("0")),  # held/clawed
    Column("shortfall_diamonds", BigInteger, nullable=False, server_default=text("0")),  # owed
    Column("refund_id", String(32), ForeignKey("payment_refunds.id"), nullable=True),
    Column("hold_id", BigInteger, nullable=True),
    Column("reason", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime, nullable=True),
    UniqueConstraint("provider", "provider_dispute_id", name="uq_payment_disputes_provider_id"),
    CheckConstraint("amount >= 0", name="amount_non_negative"),
    CheckConstraint("diamonds >= 0 AND shortfall_diamonds >= 0", name="diamonds_non_negative"),
    CheckConstraint("kind IN ('dispute', 'provider_refund')", name="kind_known"),
    CheckConstraint("status IN ('open', 'won', 'lost', 'closed')", name="status_known"),
    Index("ix_payment_disputes_status", "status", "created_at"),
    Index("ix_payment_disputes_created_at", "created_at", "id"),
    Index("ix_payment_disputes_order", "order_id"),
)
