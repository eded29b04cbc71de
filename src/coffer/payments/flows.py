"""Payment steps that talk to a provider, kept apart from the transactions that follow them.

A provider call can take seconds and must never run inside a database transaction: on SQLite
the write transaction is the whole database's write lock, and on PostgreSQL the ledger's chain
head is every writer's lock. So each step here reads what it needs and calls the provider with
no transaction open; it returns what the edge then writes in one short unit of work (where the
Idempotency-Key record is kept in the same transaction). Refunds are the exception: one takes
two transactions around its provider call, so its steps own them (`refund_flows.py`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from coffer import ledger
from coffer.config import ShopConfig
from coffer.db import Database
from coffer.errors import InvalidSignature, InvalidState, NotFound, ProviderRejected
from coffer.payments import disputes, service, settlement
from coffer.payments import refunds as refund_service
from coffer.payments.service import PaymentOrder, Quote
from coffer.providers import Providers
from coffer.providers.base import OrderRequest, ProviderOrder, ProviderRefund


@dataclass(frozen=True, slots=True)
class PreparedOrder:
    """An order the provider has opened, not yet recorded."""

    order_id: str
    user_id: str
    purpose: str
    quote: Quote
    provider_order: ProviderOrder

    def record(self, session: Session, *, now: datetime) -> PaymentOrder:
        return service.record_order(
            session,
            order_id=self.order_id,
            user_id=self.user_id,
            purpose=self.purpose,
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
    default_provider: str | None,
    request_key: str | None = None,
    request_fingerprint: bytes = b"",
) -> PreparedOrder:
    """Price the top-up and open its order with the provider (no transaction open)."""
    quote = service.quote_topup(shop, package_id=package_id, diamonds=diamonds, currency=currency)
    return prepare_order(
        providers,
        user_id=user_id,
        purpose="topup",
        quote=quote,
        description=f"{quote.diamonds + quote.bonus} diamonds",
        provider_name=provider_name,
        default_provider=default_provider,
        request_key=request_key,
        request_fingerprint=request_fingerprint,
    )


def prepare_order(
    providers: Providers,
    *,
    user_id: str,
    purpose: str,
    quote: Quote,
    description: str,
    provider_name: str | None,
    default_provider: str | None,
    request_key: str | None = None,
    request_fingerprint: bytes = b"",
) -> PreparedOrder:
    """Open an order for `quote` with the provider (no transaction open).

    With `request_key` (the client's Idempotency-Key) everything sent to the provider is derived
    from the request: Coffer's order id and the provider's idempotency key both come from
    (purpose, user, key, request fingerprint). So copies that arrive together, and a retry after
    a crash between the provider's answer and our commit, send the provider the identical
    request and get the first order back, instead of a second order (or, at Stripe, a refusal
    for a key reused with other parameters). A different body under the same key derives other
    ids, opens its own order, and is then refused 409 by the idempotency claim.
    """
    # The provider named (or the default, which start-up checked is on): one that is off is a
    # 422 naming it (ProviderOff), never a quiet switch to another provider.
    provider = providers.get(provider_name or default_provider)
    order_id = service.new_order_id()
    provider_key = None
    if request_key is not None:
        digest = hashlib.sha256(
            b"%s|%s|%s|%s"
            % (
                purpose.encode(),
                user_id.encode(),
                request_key.encode(),
                request_fingerprint.hex().encode(),
            )
        ).hexdigest()
        order_id = service.order_id_for_request(digest)
        provider_key = digest
    provider_order = provider.create_order(
        OrderRequest(
            order_id=order_id,
            amount=quote.amount,
            currency=quote.currency,
            description=description,
            customer_id=user_id,
            idempotency_key=provider_key,
        )
    )
    return PreparedOrder(order_id, user_id, purpose, quote, provider_order)


@dataclass(frozen=True, slots=True)
class CheckedPayment:
    """A client's confirmation the provider vouched for (or an order settled already)."""

    order_id: str
    payment_id: str | None  # None: nothing to credit, the order was settled before
    # What the provider says was refunded of the payment already, whoever refunded it.
    refunds: tuple[ProviderRefund, ...] = ()


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
    return CheckedPayment(order.id, confirmation.payment_id, confirmation.refunds)


def plan_confirmation(database: Database, checked: CheckedPayment) -> ledger.Work:
    """The unit of work that credits a checked order, once (a no-op if the webhook got there
    first); its answer is a `Confirmed`."""
    if checked.payment_id is None:
        order_id = checked.order_id
        return ledger.Work(
            None,
            before=lambda session: ledger.Done(
                Confirmed(service.get_order(session, order_id), credited=False)
            ),
        )
    work = settlement.plan_credit(
        database, order_id=checked.order_id, payment_id=checked.payment_id, via="verify"
    )
    return work.then(lambda session, answer: _claw_back_refunded(session, checked, *answer))


def _claw_back_refunded(
    session: Session, checked: CheckedPayment, order: PaymentOrder, credited: bool
) -> Confirmed:
    """Refunded at the provider before the client came back: credited, then clawed back, once
    per provider refund (a later webhook for the same refund finds it booked). Runs in the
    credit's own unit of work, after its ledger group."""
    now = order.updated_at
    clawed = False
    for refund in checked.refunds:
        if refund.status != "succeeded" or refund.currency != order.currency:
            continue
        if refund_service.find_by_provider_refund(session, refund.refund_id) is not None:
            continue
        if refund.reference and refund_service.find_refund(session, refund.reference):
            continue
        if refund_service.awaits_provider_id(session, order_id=order.id, amount=refund.amount):
            continue  # maybe Coffer's own, not yet named: its webhook or resume settles it
        disputes.record_provider_refund(
            session,
            order_id=order.id,
            provider_refund_id=refund.refund_id,
            amount=refund.amount,
            reason=None,
            via="verify",
            now=now,
        )
        clawed = True
    if clawed:
        order = service.get_order(session, order.id)
    return Confirmed(order, credited)


__all__ = [
    "CheckedPayment",
    "Confirmed",
    "PreparedOrder",
    "check_confirmation",
    "plan_confirmation",
    "prepare_order",
    "prepare_topup",
]
