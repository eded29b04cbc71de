"""Escrow moves that talk to a provider: opening one (its payment order) and refunding it.

The one place in escrow that orchestrates several units of work around a provider call
(STYLE habit 2): no transaction is open while the provider is asked.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from coffer.db import Database, Writer
from coffer.errors import IdempotencyConflict, ProviderRejected
from coffer.escrow import records, service
from coffer.escrow.records import Escrow
from coffer.kit.clock import Clock
from coffer.payments import flows as payment_flows
from coffer.payments import refund_flows
from coffer.payments import refunds as refund_service
from coffer.payments import service as payments
from coffer.payments.flows import PreparedOrder
from coffer.payments.refunds import Refund
from coffer.providers import Providers

REFUND_REASON_DEFAULT = "refunded by the payer"


def prepare_escrow(
    providers: Providers,
    *,
    payer_id: str,
    amount: int,
    currency: str,
    provider_name: str | None,
    default_provider: str | None,
    request_key: str | None,
    request_fingerprint: bytes,
) -> PreparedOrder:
    """Open the escrow's payment order with the provider (no transaction open)."""
    quote = payments.Quote(amount, currency, 0, 0, None)
    return payment_flows.prepare_order(
        providers,
        user_id=payer_id,
        purpose="escrow",
        quote=quote,
        description="Escrow payment",
        provider_name=provider_name,
        default_provider=default_provider,
        request_key=request_key,
        request_fingerprint=request_fingerprint,
    )


def record_escrow(
    session: Session,
    prepared: PreparedOrder,
    *,
    payee_id: str,
    fee_bps: int,
    reference: str | None,
    auto_release_at: datetime | None,
    now: datetime,
) -> tuple[Escrow, payments.PaymentOrder]:
    """The order and its escrow, in the caller's one transaction (nothing moves yet)."""
    order = prepared.record(session, now=now)
    escrow = service.record_escrow(
        session,
        order=order,
        payee_id=payee_id,
        fee_bps=fee_bps,
        reference=reference,
        auto_release_at=auto_release_at,
        now=now,
    )
    return escrow, order


def refund_escrow(
    database: Database,
    providers: Providers,
    writer: Writer,
    *,
    escrow_id: str,
    role: str,
    reason: str | None,
    actor: str,
    refund_key: str,
    clock: Clock,
) -> Escrow:
    """Give back what the escrow still holds, through the provider that took it.

    1. one unit: the move checked under the escrow's lock, the refund begun (payments/refunds.py)
       and the escrow `refunding`;
    2. the provider asked (idempotent on the refund's id), no transaction open;
    3. its answer booked (the refund's settlement hook makes the escrow `refunded`, or puts it
       back where it was if the provider refused). A provider that does not answer leaves the
       refund pending: the refund jobs ask again, and the hook finishes the escrow then.

    The same request again (its `refund_key`: a copy that arrived together, or a retry after the
    provider did not answer) finds the refund it began and carries on from there, instead of
    being refused for the `refunding` state it put the escrow in itself.
    """
    reason = reason or REFUND_REASON_DEFAULT
    with database.read() as session:
        planned = records.get_escrow(session, escrow_id)
        earlier = _begun_by(session, planned, refund_key=refund_key, reason=reason)
    if earlier is None:
        records.check_move(planned, "refund", role)

    def begin(session: Session) -> tuple[Refund, payments.PaymentOrder]:
        escrow = records.get_escrow(session, escrow_id, for_update=True)
        order = payments.get_order(session, escrow.order_id)
        earlier = _begun_by(session, escrow, refund_key=refund_key, reason=reason)
        if earlier is not None:
            return earlier, order
        records.check_move(escrow, "refund", role)
        now = clock()
        refund, _ = refund_service.begin_refund(
            session,
            order_id=escrow.order_id,
            amount=escrow.left,
            reason=reason,
            force=False,
            actor=actor,
            idempotency_key=refund_key,
            now=now,
            purpose="escrow",
        )
        escrow = service.mark_refunding(session, escrow, refund_id=refund.id, now=now)
        if role == records.ADMIN:
            service.record_operator_move(
                session, escrow, actor=actor, action="escrow.refund", reason=reason, now=now,
                details={"amount": refund.amount, "refund_id": refund.id},
            )  # fmt: skip
        return refund, order

    refund, order = writer.call(begin)
    if refund.status == "pending" and refund.provider_refund_id is None:
        # Not yet known to have reached the provider: ask (again, with the same key).
        refund_flows.send_refund(
            database, providers, refund=refund, order=order, clock=clock, writer=writer
        )
    with database.read() as session:
        return records.get_escrow(session, escrow_id)


def _begun_by(session: Session, escrow: Escrow, *, refund_key: str, reason: str) -> Refund | None:
    """The refund of this escrow that the request with `refund_key` began, if it did."""
    refund = refund_service.find_by_key(
        session, order_id=escrow.order_id, idempotency_key=refund_key
    )
    if refund is None:
        return None
    if refund.reason != reason.strip():
        raise IdempotencyConflict("this idempotency key was used for a refund with another reason")
    if refund.status == "failed":
        # The first answer was the provider's refusal; the same request gets it again rather
        # than a refund begun anew under a key that already names a failed one.
        raise ProviderRejected(f"the provider refused this refund: {refund.failure_reason}")
    return refund
