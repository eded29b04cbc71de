"""Refund steps that talk to a provider, and the jobs that finish the ones left pending.

A refund takes two units of work around its provider call, so unlike the order steps in
`flows.py` these own their transactions: `refund_order` reserves the refund through the writer
(refunds.py has the steps), asks the provider with no transaction open, and books its answer in
another unit. A crash or an outage in between leaves the refund pending with its reservation;
`resume_refunds` asks again with the same key, and `reconcile_refunds` finishes the ones the
provider acknowledged but never settled.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy.orm import Session

from coffer import alerts, ledger, oplog
from coffer.db import Database, Writer, claims
from coffer.errors import ProviderRejected, ProviderUnavailable
from coffer.kit.clock import Clock
from coffer.payments import refund_outcomes, service
from coffer.payments import refunds as refund_service
from coffer.payments.refunds import Refund
from coffer.payments.service import PaymentOrder
from coffer.payments.tables import refunds as refunds_table
from coffer.providers import Providers
from coffer.providers.base import ProviderRefund

log = structlog.get_logger(__name__)

RESUME_AFTER_S = 60
RESUME_BATCH_MAX = 50
RECONCILE_AFTER_S = 15 * 60
RECONCILE_BATCH_MAX = 50


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
            lambda session: refund_outcomes.fail_refund(
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
            return refund_outcomes.complete_refund(
                session, refund_id=refund.id, provider_refund_id=provided.refund_id, now=clock()
            )
        if provided.status == "failed":
            return refund_outcomes.fail_refund(
                session, refund_id=refund.id, reason="the provider failed the refund", now=clock()
            )
        return refund_outcomes.note_provider_refund(
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
            return refund_outcomes.complete_refund(
                session, refund_id=refund.id, provider_refund_id=provided.refund_id, now=clock()
            )
        if provided.status == "failed":
            return refund_outcomes.reverse_refund(
                session, refund_id=refund.id, reason="the provider failed the refund", now=clock()
            )
        return refund_outcomes.note_provider_refund(
            session, refund_id=refund.id, provider_refund_id=provided.refund_id, now=clock()
        )

    booked: Refund = writer.call(book)
    return booked


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


__all__ = [
    "RECONCILE_AFTER_S",
    "RECONCILE_BATCH_MAX",
    "RESUME_AFTER_S",
    "RESUME_BATCH_MAX",
    "reconcile_refunds",
    "refund_order",
    "resume_refunds",
    "send_refund",
    "settle_from_provider",
]
