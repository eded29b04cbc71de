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

from coffer import alerts, ledger, oplog
from coffer.config import ShopConfig
from coffer.db import Database, Writer, claims
from coffer.errors import (
    InvalidSignature,
    InvalidState,
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
)
from coffer.kit.clock import Clock
from coffer.payments import disputes, service, settlement
from coffer.payments import refunds as refund_service
from coffer.payments.refunds import Refund
from coffer.payments.service import PaymentOrder, Quote
from coffer.payments.tables import refunds as refunds_table
from coffer.providers import Providers
from coffer.providers.base import OrderRequest, ProviderOrder, ProviderRefund

log = structlog.get_logger(__name__)


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
    writer: Writer | None = None,
) -> Refund:
    """Refund all or part of a paid order through its provider (refunds.py has the steps).

    Each step that writes the ledger is a unit of work through the writer (no transaction is
    open while the provider is asked)."""
    writer = writer or Writer(database, group_commit=False)

    def begin(session: Session) -> tuple[Refund, bool, PaymentOrder]:
        now = clock()
        refund, is_new = refund_service.begin_refund(
            session,
            order_id=order_id,
            amount=amount,
            reason=reason,
            force=force,
            actor=actor,
            idempotency_key=idempotency_key,
            now=now,
        )
        if is_new:  # the operator's decision, audited where it is made (a replay adds nothing)
            oplog.record(
                session,
                actor=actor,
                action="payment.refund",
                subject_type="payment_order",
                subject_id=order_id,
                reason=refund.reason,
                details={
                    "refund_id": refund.id,
                    "amount": refund.amount,
                    "diamonds": refund.diamonds,
                    "shortfall_diamonds": refund.shortfall_diamonds,
                    "forced": refund.forced,
                },
                now=now,
            )
        return refund, is_new, service.get_order(session, order_id)

    begun: tuple[Refund, bool, PaymentOrder] = writer.call(begin)
    refund, is_new, order = begun
    if not is_new and refund.status != "pending":
        return refund
    if refund.provider_refund_id is not None:
        return refund  # the provider has it; its webhook will finish it
    return send_refund(database, providers, refund=refund, order=order, clock=clock, writer=writer)


def send_refund(
    database: Database,
    providers: Providers,
    *,
    refund: Refund,
    order: PaymentOrder,
    clock: Clock,
    writer: Writer | None = None,
) -> Refund:
    """Ask the provider for a pending refund (idempotent on the refund's id) and book the answer."""
    if refund.status != "pending" or refund.order_id != order.id:  # money would leave twice
        raise ledger.InvariantViolated(
            f"refund {refund.id} ({refund.status}, order {refund.order_id}) sent for {order.id}"
        )
    writer = writer or Writer(database, group_commit=False)
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
        # A retry the provider refuses ("already refunded", or its idempotency window passed)
        # may be refused because the first attempt went through: ask before giving up.
        try:
            settled = settle_from_provider(
                database, providers, refund=refund, order=order, clock=clock, writer=writer
            )
        except ProviderUnavailable:
            # Cannot tell: the refund stays pending, reserved, and `resume_refunds` asks again.
            log.warning("refund_reconcile_failed", refund_id=refund.id, order_id=order.id)
            raise exc from None
        except ProviderRejected:
            settled = None  # the provider knows no such payment's refunds: nothing got there
        if settled is not None:
            return settled
        refused = exc.message
        writer.call(
            lambda session: refund_service.fail_refund(
                session, refund_id=refund.id, reason=refused, now=clock()
            )
        )
        raise
    except ProviderUnavailable:
        # The outcome is unknown: the refund stays pending with its reservation, and
        # `resume_refunds` (or the same request again) asks the provider with the same key.
        log.warning("refund_provider_unavailable", refund_id=refund.id, order_id=order.id)
        raise

    def book(session: Session) -> Refund:
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

    booked: Refund = writer.call(book)
    return booked


def settle_from_provider(
    database: Database,
    providers: Providers,
    *,
    refund: Refund,
    order: PaymentOrder,
    clock: Clock,
    writer: Writer | None = None,
) -> Refund | None:
    """Find a refund at the provider by the id Coffer sent along with it, and book how it
    stands there; None when the provider has no such refund (so it never got there)."""
    if not order.provider_payment_id:
        return None
    provider = providers.get(order.provider)
    found = [
        r
        for r in provider.refunds_of_payment(payment_id=order.provider_payment_id)
        if r.reference == refund.id
    ]
    if not found:
        return None
    return _book_provider_answer(
        database, refund=refund, provided=found[0], clock=clock, writer=writer
    )


def _book_provider_answer(
    database: Database,
    *,
    refund: Refund,
    provided: ProviderRefund,
    clock: Clock,
    writer: Writer | None = None,
) -> Refund:
    if provided.amount != refund.amount:
        raise ProviderRejected(
            f"the provider's refund {provided.refund_id} is for {provided.amount}, "
            f"not {refund.amount}",
            refund_id=refund.id,
        )
    writer = writer or Writer(database, group_commit=False)

    def book(session: Session) -> Refund:
        if provided.status == "succeeded":
            return refund_service.complete_refund(
                session, refund_id=refund.id, provider_refund_id=provided.refund_id, now=clock()
            )
        if provided.status == "failed":
            return refund_service.reverse_refund(
                session, refund_id=refund.id, reason="the provider failed the refund", now=clock()
            )
        return refund_service.note_provider_refund(
            session, refund_id=refund.id, provider_refund_id=provided.refund_id, now=clock()
        )

    booked: Refund = writer.call(book)
    return booked


RESUME_AFTER_S = 60
RESUME_BATCH_MAX = 50
RECONCILE_AFTER_S = 15 * 60
RECONCILE_BATCH_MAX = 50


def resume_refunds(
    database: Database,
    providers: Providers,
    clock: Clock,
    *,
    limit: int = RESUME_BATCH_MAX,
    writer: Writer | None = None,
) -> int:
    """Ask the provider again for refunds left pending without its answer (a crash or an
    outage between reserving and asking); returns how many were tried."""
    now = clock()
    # Claimed (leased by `updated_at`) so that two processes never send one refund together.
    claimed = claims.claim(
        database,
        refund_service.stalled_due(older_than=now - timedelta(seconds=RESUME_AFTER_S), limit=limit),
        table=refunds_table,
        lease=refunds_table.c.updated_at,
        until=now,
    )
    with database.read() as session:
        stalled = [refund_service.get_refund(session, refund_id) for refund_id in claimed]
        orders = {r.order_id: service.get_order(session, r.order_id) for r in stalled}
    for refund in stalled:
        order = orders[refund.order_id]
        try:
            # The first attempt may have reached the provider: look before asking again.
            if settle_from_provider(
                database, providers, refund=refund, order=order, clock=clock, writer=writer
            ):
                continue
            send_refund(database, providers, refund=refund, order=order, clock=clock, writer=writer)
        except (ProviderRejected, ProviderUnavailable) as exc:
            log.warning("refund_resume_failed", refund_id=refund.id, error=exc.message)
    return len(stalled)


def reconcile_refunds(
    database: Database,
    providers: Providers,
    clock: Clock,
    *,
    limit: int = RECONCILE_BATCH_MAX,
    writer: Writer | None = None,
) -> int:
    """Finish refunds the provider acknowledged but never settled (its webhook lost or late):
    ask it how each stands and book that. Each refund is asked about at most
    `refunds.RECONCILE_ATTEMPTS_MAX` times, `RECONCILE_AFTER_S` apart; then an alert says so.
    Returns how many were asked about."""
    now = clock()
    claimed = claims.claim(
        database,
        refund_service.acknowledged_due(
            older_than=now - timedelta(seconds=RECONCILE_AFTER_S), limit=limit
        ),
        table=refunds_table,
        lease=refunds_table.c.updated_at,
        until=now,
    )
    with database.read() as session:
        due = [refund_service.get_refund(session, refund_id) for refund_id in claimed]
        orders = {r.order_id: service.get_order(session, r.order_id) for r in due}
    for refund in due:
        order = orders[refund.order_id]
        assert refund.provider_refund_id is not None
        error: str | None = None
        try:
            provided = providers.get(order.provider).get_refund(
                refund_id=refund.provider_refund_id, payment_id=order.provider_payment_id or ""
            )
            settled = _book_provider_answer(
                database, refund=refund, provided=provided, clock=clock, writer=writer
            )
            if settled.status != "pending":
                continue
        except (ProviderRejected, ProviderUnavailable) as exc:
            error = exc.message
            log.warning("refund_reconcile_failed", refund_id=refund.id, error=exc.message)
        with database.unit_of_work() as session:
            attempts = refund_service.count_reconcile_attempt(
                session, refund_id=refund.id, now=clock()
            )
            if attempts >= refund_service.RECONCILE_ATTEMPTS_MAX:
                alerts.raise_alert(
                    session,
                    kind="refund.unreconciled",
                    severity="critical",
                    message=(
                        f"refund {refund.id} of order {order.id} is still pending at "
                        f"{order.provider} after {attempts} checks; settle it by hand"
                    ),
                    now=clock(),
                    subject_id=refund.id,
                    details={"provider_refund_id": refund.provider_refund_id, "error": error},
                )
    return len(due)
