"""Booking the provider's answer to a refund: `complete_refund` posts the clawback hold,
reverses the payment's ledger transfer in part or in full and books any shortfall as the user's
debt, all in one linked group; `fail_refund` voids the hold and frees the amount;
`note_provider_refund` records an acknowledgement; `reverse_refund` undoes a refund the provider
failed after it had succeeded. Each runs in the caller's unit of work with the order row locked
(`refunds.lock_order_row`), and tells the order's settlement hook what happened."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from coffer import ledger
from coffer.config import DIAMOND
from coffer.errors import InvalidState
from coffer.ledger import PostHold, Reversal, TransferRequest
from coffer.payments import settlement
from coffer.payments.refund_rows import REASON_LENGTH_MAX, Refund, get_refund
from coffer.payments.refunds import lock_order_row, move_order
from coffer.payments.service import LEDGER_SOURCE
from coffer.payments.tables import payment_orders, refunds
from coffer.wallets.service import system_account


def _undone_amount(session: Session, order_id: str) -> int:
    """What refunds of this order that failed after succeeding had booked (and then undid)."""
    failed = session.execute(
        select(refunds.c.id).where(refunds.c.order_id == order_id, refunds.c.status == "failed")
    ).all()
    if not failed:
        return 0
    made = ledger.find_by_idempotency(
        session, source=LEDGER_SOURCE, keys=[f"{r.id}:undo-payment" for r in failed]
    )
    return sum(t.amount for t in made.values())


def reverse_refund(session: Session, *, refund_id: str, reason: str, now: datetime) -> Refund:
    """The provider failed a refund after it had succeeded (Stripe's `refund.failed`): the money
    came back, so undo its booking (payment, clawback, debt) and mark it failed. A pending one
    is simply failed; a failed one is left alone."""
    refund = get_refund(session, refund_id, for_update=True)
    if refund.status == "pending":
        return fail_refund(session, refund_id=refund_id, reason=reason, now=now)
    if refund.status != "succeeded":
        return refund
    order = lock_order_row(session, refund.order_id)
    parts = ("payment", "clawback", "shortfall")
    made = ledger.find_by_idempotency(
        session, source=LEDGER_SOURCE, keys=[f"{refund.id}:{part}" for part in parts]
    )
    meta = {"order_id": order.id, "refund_id": refund.id, "reason": reason[:200]}
    operations: list[ledger.Operation] = [
        Reversal(
            transfer_id=made[f"{refund.id}:{part}"].id,
            type="refund_reversal",
            metadata=meta,
            idempotency_key=f"{refund.id}:undo-{part}",
        )
        for part in parts
        if f"{refund.id}:{part}" in made
    ]
    ledger.execute(session, operations, source=LEDGER_SOURCE, now=now)
    refunded = order.refunded_amount - refund.amount
    status = "partially_refunded" if refunded else "succeeded"
    result = session.execute(
        update(payment_orders)
        .where(
            payment_orders.c.id == order.id,
            payment_orders.c.refunded_amount == order.refunded_amount,
        )
        .values(
            refunded_amount=refunded,
            diamonds_clawed_back=order.diamonds_clawed_back
            - refund.diamonds
            - refund.shortfall_diamonds,
            status=status,
            updated_at=now,
        )
    )
    if not (isinstance(result, CursorResult) and result.rowcount == 1):
        raise RuntimeError(f"order {order.id} changed under its lock")
    settlement.refund_booked(
        session, order, refund_id=refund.id, amount=refund.amount, outcome="reversed", now=now
    )
    session.execute(
        update(refunds)
        .where(refunds.c.id == refund.id)
        .values(status="failed", failure_reason=reason[:REASON_LENGTH_MAX], updated_at=now)
    )
    return get_refund(session, refund.id)


def complete_refund(
    session: Session, *, refund_id: str, provider_refund_id: str | None, now: datetime
) -> Refund:
    """The provider returned the money: book it. Completing twice is a no-op."""
    refund = get_refund(session, refund_id, for_update=True)
    if refund.status == "succeeded":
        return refund
    if refund.status != "pending":
        raise InvalidState(f"refund {refund_id} is {refund.status}", status=refund.status)
    order = lock_order_row(session, refund.order_id)
    if order.payment_transfer_id is None:  # a refund reverses the credit; there must be one
        raise ledger.InvariantViolated(f"order {order.id} is refunded but was never credited")
    meta = {"order_id": order.id, "refund_id": refund.id}
    payment_back: ledger.Operation = Reversal(
        transfer_id=order.payment_transfer_id,
        amount=refund.amount,
        type="refund",
        metadata=meta,
        idempotency_key=f"{refund.id}:payment",
    )
    if _undone_amount(session, order.id):
        # A refund of this order was undone (it failed after succeeding): the ledger counts
        # its reversal against the payment for ever, so the money goes back as a transfer of
        # its own between the same accounts instead.
        payment = ledger.get_transfer(session, order.payment_transfer_id)
        payment_back = TransferRequest(
            debit_account_id=payment.credit_account_id,
            credit_account_id=payment.debit_account_id,
            amount=refund.amount,
            type="refund",
            metadata={**meta, "payment_transfer_id": payment.id},
            idempotency_key=f"{refund.id}:payment",
        )
    operations: list[ledger.Operation] = [payment_back]
    if refund.hold_id is not None:
        operations.append(
            PostHold(
                hold_id=refund.hold_id,
                metadata={"order_id": order.id, "refund_id": refund.id},
                idempotency_key=f"{refund.id}:clawback",
            )
        )
    if refund.shortfall_diamonds:
        # What the user owes: debited below zero, so this account carries no overdraft flag.
        receivable = ledger.open_account(
            session, asset=DIAMOND, owner_type="user", owner_id=order.user_id, kind="receivable"
        )
        issuance = system_account(session, kind="issuance", asset=DIAMOND)
        operations.append(
            TransferRequest(
                debit_account_id=receivable.id,
                credit_account_id=issuance.id,
                amount=refund.shortfall_diamonds,
                type="refund",
                metadata={
                    "order_id": order.id,
                    "refund_id": refund.id,
                    "description": "diamonds refunded after they were spent: owed",
                },
                idempotency_key=f"{refund.id}:shortfall",
            )
        )
    ledger.execute(session, operations, source=LEDGER_SOURCE, now=now)
    move_order(
        session,
        order,
        pending_delta=-refund.amount,
        refunded_delta=refund.amount,
        clawed_delta=refund.diamonds + refund.shortfall_diamonds,
        now=now,
    )
    settlement.refund_booked(
        session, order, refund_id=refund.id, amount=refund.amount, outcome="succeeded", now=now
    )
    session.execute(
        update(refunds)
        .where(refunds.c.id == refund.id)
        .values(
            status="succeeded",
            provider_refund_id=provider_refund_id or refund.provider_refund_id,
            updated_at=now,
        )
    )
    return get_refund(session, refund.id)


def note_provider_refund(
    session: Session, *, refund_id: str, provider_refund_id: str, now: datetime
) -> Refund:
    """The provider accepted the refund but has not finished it (its webhook will)."""
    session.execute(
        update(refunds)
        .where(refunds.c.id == refund_id, refunds.c.status == "pending")
        .values(provider_refund_id=provider_refund_id, updated_at=now)
    )
    return get_refund(session, refund_id)


def fail_refund(session: Session, *, refund_id: str, reason: str, now: datetime) -> Refund:
    """The provider refused or failed the refund: release what was reserved."""
    refund = get_refund(session, refund_id, for_update=True)
    if refund.status != "pending":
        return refund
    order = lock_order_row(session, refund.order_id)
    if refund.hold_id is not None:
        ledger.void_hold(
            session,
            hold_id=refund.hold_id,
            metadata={"refund_id": refund.id, "reason": reason[:200]},
            idempotency_key=f"{refund.id}:release",
            source=LEDGER_SOURCE,
            now=now,
        )
    move_order(
        session, order, pending_delta=-refund.amount, refunded_delta=0, clawed_delta=0, now=now
    )
    settlement.refund_booked(
        session, order, refund_id=refund.id, amount=refund.amount, outcome="failed", now=now
    )
    session.execute(
        update(refunds)
        .where(refunds.c.id == refund.id)
        .values(status="failed", failure_reason=reason[:REASON_LENGTH_MAX], updated_at=now)
    )
    return get_refund(session, refund.id)


__all__ = ["complete_refund", "fail_refund", "note_provider_refund", "reverse_refund"]
