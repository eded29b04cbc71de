"""Escrow moves that talk to a provider: opening one (its payment order) and refunding it.

The one place in escrow that orchestrates several units of work around a provider call
(STYLE habit 2): no transaction is open while the provider is asked.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from coffer.db import Database, Writer
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
    """
    with database.read() as session:
        planned = records.get_escrow(session, escrow_id)
    records.check_move(planned, "refund", role)

    def begin(session: Session) -> tuple[Escrow, Refund, payments.PaymentOrder]:
        escrow = records.get_escrow(session, escrow_id, for_update=True)
        records.check_move(escrow, "refund", role)
        now = clock()
        refund, _ = refund_service.begin_refund(
            session,
            order_id=escrow.order_id,
            amount=escrow.left,
            reason=reason or REFUND_REASON_DEFAULT,
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
        return escrow, refund, payments.get_order(session, escrow.order_id)

    _, refund, order = writer.call(begin)
    refund_flows.send_refund(
        database, providers, refund=refund, order=order, clock=clock, writer=writer
    )
    with database.read() as session:
        return records.get_escrow(session, escrow_id)
