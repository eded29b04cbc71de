"""Payment steps that talk to a provider, kept apart from the transactions that follow them.

A provider call can take seconds and must never run inside a database transaction: on SQLite
the write transaction is the whole database's write lock, and on PostgreSQL the ledger's chain
head is every writer's lock. So each step here reads what it needs and calls the provider with
no transaction open; it returns what the edge then writes in one short unit of work (where the
Idempotency-Key record is kept in the same transaction). `refund_order` is the exception: a
refund takes two transactions around its provider call, so it owns them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session

from coffer import ledger
from coffer.config import ShopConfig
from coffer.db import Database
from coffer.errors import (
    InvalidSignature,
    InvalidState,
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
)
from coffer.kit.clock import Clock
from coffer.payments import refunds as refund_service
from coffer.payments import service
from coffer.payments.refunds import Refund
from coffer.payments.service import PaymentOrder, Quote
from coffer.providers import Providers
from coffer.providers.base import OrderRequest, ProviderOrder

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PreparedTopup:
    """An order the provider has opened, not yet recorded."""

    order_id: str
    user_id: str
    quote: Quote
    provider_order: ProviderOrder

    def record(self, session: Session, *, now: datetime) -> PaymentOrder:
        return service.record_order(
            session,
            order_id=self.order_id,
            user_id=self.user_id,
            purpose="topup",
            quote=self.quote,
            provider_order=self.provider_order,
            now=now,
        )


def prepare_topup(
    providers: Providers,
    shop: ShopConfig,
    *,
    user_id: str,
    package_id: str | None,
    diamonds: int | None,
    currency: str | None,
    provider_name: str | None,
    default_provider: str,
    request_key: str | None = None,
) -> PreparedTopup:
    """Price the top-up and open the order with the provider (no transaction open).

    `request_key` (the client's Idempotency-Key) makes the provider-side call idempotent too
    where the provider supports it, so a retried request leaves no second open order there.
    """
    quote = service.quote_topup(shop, package_id=package_id, diamonds=diamonds, currency=currency)
    provider = providers.get(provider_name or default_provider)
    order_id = service.new_order_id()
    provider_key = None
    if request_key is not None:
        provider_key = hashlib.sha256(f"topup|{user_id}|{request_key}".encode()).hexdigest()
    provider_order = provider.create_order(
        OrderRequest(
            order_id=order_id,
            amount=quote.amount,
            currency=quote.currency,
            description=f"{quote.diamonds + quote.bonus} diamonds",
            customer_id=user_id,
            idempotency_key=provider_key,
        )
    )
    return PreparedTopup(order_id, user_id, quote, provider_order)


@dataclass(frozen=True, slots=True)
class CheckedPayment:
    """A client's confirmation the provider vouched for (or an order settled already)."""

    order_id: str
    payment_id: str | None  # None: nothing to credit, the order was settled before


@dataclass(frozen=True, slots=True)
class Confirmed:
    order: PaymentOrder
    credited: bool  # False when the webhook (or an earlier verify) had credited it already


def check_confirmation(
    database: Database,
    providers: Providers,
    *,
    user_id: str,
    order_id: str,
    payment_id: str,
    signature: str,
) -> CheckedPayment:
    """Check the client's proof of payment with the order's provider (no transaction open).

    A bad signature raises InvalidSignature; nothing is written.
    """
    with database.read() as session:
        order = service.get_user_order(session, order_id=order_id, user_id=user_id)
    if order.status in service.SETTLED:
        return CheckedPayment(order.id, None)
    if order.provider_order_id is None:
        raise NotFound(f"order {order_id} has no provider order")
    try:
        confirmation = providers.get(order.provider).verify_payment(
            provider_order_id=order.provider_order_id,
            payment_id=payment_id,
            signature=signature,
            amount=order.amount,
            currency=order.currency,
        )
    except ProviderRejected as exc:
        # The provider does not (yet) vouch for this payment: e.g. a PaymentIntent not yet
        # succeeded. The client's claim is what is wrong, not the gateway.
        raise InvalidState(
            f"the provider has not confirmed this payment: {exc.message}", **exc.details
        ) from exc
    if (confirmation.amount, confirmation.currency) != (order.amount, order.currency):
        raise InvalidSignature("the confirmed payment does not match the order")
    return CheckedPayment(order.id, confirmation.payment_id)


def apply_confirmation(session: Session, checked: CheckedPayment, *, now: datetime) -> Confirmed:
    """Credit a checked order, once (a no-op if the webhook got there first)."""
    if checked.payment_id is None:
        return Confirmed(service.get_order(session, checked.order_id), credited=False)
    order, credited = service.credit_order(
        session, order_id=checked.order_id, payment_id=checked.payment_id, via="verify", now=now
    )
    return Confirmed(order, credited)


def refund_order(
    database: Database,
    providers: Providers,
    *,
    order_id: str,
    amount: int | None,
    reason: str,
    force: bool,
    actor: str,
    idempotency_key: str | None,
    clock: Clock,
) -> Refund:
    """Refund all or part of a paid order through its provider (refunds.py has the steps)."""
    with database.unit_of_work() as session:
        refund, is_new = refund_service.begin_refund(
            session,
            order_id=order_id,
            amount=amount,
            reason=reason,
            force=force,
            actor=actor,
            idempotency_key=idempotency_key,
            now=clock(),
        )
        order = service.get_order(session, order_id)
    if not is_new and refund.status != "pending":
        return refund
    if refund.provider_refund_id is not None:
        return refund  # the provider has it; its webhook will finish it
    return send_refund(database, providers, refund=refund, order=order, clock=clock)


def send_refund(
    database: Database, providers: Providers, *, refund: Refund, order: PaymentOrder, clock: Clock
) -> Refund:
    """Ask the provider for a pending refund (idempotent on the refund's id) and book the answer."""
    if refund.status != "pending" or refund.order_id != order.id:  # money would leave twice
        raise ledger.InvariantViolated(
            f"refund {refund.id} ({refund.status}, order {refund.order_id}) sent for {order.id}"
        )
    provider = providers.get(order.provider)
    try:
        provided = provider.refund(
            payment_id=order.provider_payment_id or "",
            amount=refund.amount,
            currency=order.currency,
            idempotency_key=refund.id,
            reason=refund.reason,
        )
    except ProviderRejected as exc:
        with database.unit_of_work() as session:
            refund_service.fail_refund(
                session, refund_id=refund.id, reason=exc.message, now=clock()
            )
        raise
    except ProviderUnavailable:
        # The outcome is unknown: the refund stays pending with its reservation, and
        # `resume_refunds` (or the same request again) asks the provider with the same key.
        log.warning("refund_provider_unavailable", refund_id=refund.id, order_id=order.id)
        raise
    with database.unit_of_work() as session:
        if provided.status == "succeeded":
            return refund_service.complete_refund(
                session, refund_id=refund.id, provider_refund_id=provided.refund_id, now=clock()
            )
        if provided.status == "failed":
            return refund_service.fail_refund(
                session, refund_id=refund.id, reason="the provider failed the refund", now=clock()
            )
        return refund_service.note_provider_refund(
            session, refund_id=refund.id, provider_refund_id=provided.refund_id, now=clock()
        )


RESUME_AFTER_S = 60
RESUME_BATCH_MAX = 50


def resume_refunds(
    database: Database, providers: Providers, clock: Clock, *, limit: int = RESUME_BATCH_MAX
) -> int:
    """Ask the provider again for refunds left pending without its answer (a crash or an
    outage between reserving and asking); returns how many were tried."""
    with database.read() as session:
        stalled = refund_service.stalled_refunds(
            session, older_than=clock() - timedelta(seconds=RESUME_AFTER_S), limit=limit
        )
        orders = {r.order_id: service.get_order(session, r.order_id) for r in stalled}
    for refund in stalled:
        try:
            send_refund(
                database, providers, refund=refund, order=orders[refund.order_id], clock=clock
            )
        except (ProviderRejected, ProviderUnavailable) as exc:
            log.warning("refund_resume_failed", refund_id=refund.id, error=exc.message)
    return len(stalled)
