"""Refunds: give money back through the provider and claw back the diamonds it bought.

A refund runs in three steps because the provider call must not run inside a transaction:
1. `begin_refund` (one transaction): lock the order, check the amount against what is left,
   reserve the diamonds to claw back with a ledger hold (so they cannot be spent meanwhile) and
   record the refund as pending, with the amount counted in the order's `refund_pending_amount`.
2. the provider refunds (outside any transaction, idempotent on the refund id);
3. `complete_refund` posts the hold, reverses the payment's ledger transfer in part or in full
   and books any shortfall as the user's debt, all in one linked group; or `fail_refund` voids
   the hold and frees the amount.

This module has the first step (and `reserve_clawback`, its counterpart for a refund the
provider made on its own) and what every step shares: the order row's lock and the guarded
update of its refund counters. The third step is `refund_outcomes.py`'s; the refund rows and
their reads are `refund_rows.py`'s (re-exported here). Diamonds are clawed back in proportion
to the money refunded, rounded so that refunding the whole order claws back exactly every
diamond it credited (bonus included).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CursorResult, insert, select, update
from sqlalchemy.orm import Session

from coffer import ledger
from coffer.config import DIAMOND
from coffer.errors import (
    IdempotencyConflict,
    InsufficientFunds,
    InvalidState,
    NotFound,
    ValidationFailed,
)
from coffer.kit.ids import new_id
from coffer.payments.refund_rows import (
    PROVIDER_ACTORS,
    REASON_LENGTH_MAX,
    RECONCILE_ATTEMPTS_MAX,
    Refund,
    acknowledged_due,
    awaits_provider_id,
    clawback_for,
    count_reconcile_attempt,
    find_by_key,
    find_by_provider_refund,
    find_refund,
    fingerprint,
    get_refund,
    refund_from_row,
    refunds_of_order,
    stalled_due,
)
from coffer.payments.service import (
    LEDGER_SOURCE,
    PaymentOrder,
    get_order,
    order_from_row,
)
from coffer.payments.tables import payment_orders, refunds
from coffer.wallets.service import system_account, wallet_account


def lock_order_row(session: Session, order_id: str) -> PaymentOrder:
    """The order row, locked for this unit of work (every refund step starts here)."""
    row = session.execute(
        select(payment_orders).where(payment_orders.c.id == order_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"no payment order {order_id!r}", order_id=order_id)
    return order_from_row(row)


def begin_refund(
    session: Session,
    *,
    order_id: str,
    amount: int | None,
    reason: str,
    force: bool,
    actor: str,
    idempotency_key: str | None,
    now: datetime,
    purpose: str = "topup",
) -> tuple[Refund, bool]:
    """Reserve what a refund takes back; returns (refund, whether it is new).

    The same idempotency key with the same request returns the refund made the first time.
    Only orders of `purpose` are refunded: an escrow's order is refunded by the escrow's own
    move (which knows what of it was released), never around it.
    """
    reason = reason.strip()
    if not reason or len(reason) > REASON_LENGTH_MAX:
        raise ValidationFailed(
            f"reason must be 1 to {REASON_LENGTH_MAX} characters",
            fields=[{"field": "body.reason", "message": "required"}],
        )
    requested = fingerprint(amount=amount, reason=reason, force=force)
    # The order row is locked before the key is looked up: copies of one request queue here,
    # and each one after the first (PostgreSQL's READ COMMITTED reads afresh after the wait)
    # finds the refund the first one committed, instead of missing it and then violating the
    # unique (order_id, idempotency_key) index. SQLite's write lock serialises them anyway.
    order = lock_order_row(session, order_id)
    if idempotency_key is not None:
        earlier = session.execute(
            select(refunds).where(
                refunds.c.order_id == order_id, refunds.c.idempotency_key == idempotency_key
            )
        ).first()
        if earlier is not None:
            if earlier.request_fingerprint != requested:
                raise IdempotencyConflict(
                    "this idempotency key was used for a different refund of this order"
                )
            return refund_from_row(earlier), False

    if order.purpose != purpose:
        raise InvalidState(
            f"this order paid for {order.purpose}: refund it through that, not the order",
            purpose=order.purpose,
        )
    if order.status not in ("succeeded", "partially_refunded"):
        raise InvalidState(
            f"an order that is {order.status} cannot be refunded", status=order.status
        )
    if order.provider_payment_id is None and order.provider != "mock":
        # Only the sandbox can refund an order whose payment it never named.
        raise InvalidState("the provider never named this order's payment; refund it there")
    committed = order.refunded_amount + order.refund_pending_amount
    remaining = order.amount - committed
    if amount is None:
        amount = remaining
    if amount <= 0 or amount > remaining:
        raise ValidationFailed(
            "a refund cannot return more than what is left of the payment",
            fields=[{"field": "body.amount", "message": f"at most {remaining}"}],
            refundable=remaining,
        )
    diamonds = clawback_for(order, refunded_before=committed, amount=amount)
    wallet = wallet_account(session, order.user_id, DIAMOND)
    held = diamonds
    if diamonds > wallet.available:
        if not force:
            raise InsufficientFunds(
                f"the user has {wallet.available} of the {diamonds} diamonds this refund takes "
                "back; refund with force to take what is there and record the rest as debt",
                diamonds=diamonds,
                available=wallet.available,
            )
        held = max(wallet.available, 0)
    refund_id = new_id("re")
    hold_id = None
    if held:
        issuance = system_account(session, kind="issuance", asset=DIAMOND)
        hold = ledger.create_hold(
            session,
            debit_account_id=wallet.id,
            credit_account_id=issuance.id,
            amount=held,
            type="refund",
            metadata={"order_id": order.id, "refund_id": refund_id},
            idempotency_key=f"{refund_id}:hold",
            source=LEDGER_SOURCE,
            now=now,
        )
        hold_id = hold.id
    session.execute(
        insert(refunds).values(
            id=refund_id,
            order_id=order.id,
            amount=amount,
            diamonds=held,
            shortfall_diamonds=diamonds - held,
            reason=reason,
            forced="true" if force else "false",
            status="pending",
            hold_id=hold_id,
            idempotency_key=idempotency_key,
            request_fingerprint=requested,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
    )
    move_order(session, order, pending_delta=amount, refunded_delta=0, clawed_delta=0, now=now)
    return get_refund(session, refund_id), True


def reserve_clawback(
    session: Session,
    *,
    order_id: str,
    amount: int,
    reason: str,
    actor: str,
    key: str,
    provider_refund_id: str | None,
    now: datetime,
) -> Refund:
    """A refund the provider made (or may make: a chargeback) without being asked here.

    Unlike `begin_refund` nothing can be refused: the money has left, so the wallet's diamonds
    are held for what it holds and the rest is recorded as shortfall (booked as the user's debt
    when the refund completes). `key` names the provider's object (`provider:<refund id>`,
    `dispute:<dispute id>`): the same key returns the refund made the first time. `amount` is
    at most what is left of the order (the caller caps it).
    """
    earlier = session.execute(
        select(refunds).where(refunds.c.order_id == order_id, refunds.c.idempotency_key == key)
    ).first()
    if earlier is not None:
        return refund_from_row(earlier)
    order = lock_order_row(session, order_id)
    committed = order.refunded_amount + order.refund_pending_amount
    if not 0 < amount <= order.amount - committed:
        raise InvalidState(
            f"order {order.id} has {order.amount - committed} left, not {amount}",
            refundable=order.amount - committed,
        )
    diamonds = clawback_for(order, refunded_before=committed, amount=amount)
    wallet = wallet_account(session, order.user_id, DIAMOND)
    held = min(diamonds, max(wallet.available, 0))
    refund_id = new_id("re")
    hold_id = None
    if held:
        issuance = system_account(session, kind="issuance", asset=DIAMOND)
        hold = ledger.create_hold(
            session,
            debit_account_id=wallet.id,
            credit_account_id=issuance.id,
            amount=held,
            type="refund",
            metadata={"order_id": order.id, "refund_id": refund_id, "key": key},
            idempotency_key=f"{refund_id}:hold",
            source=LEDGER_SOURCE,
            now=now,
        )
        hold_id = hold.id
    session.execute(
        insert(refunds).values(
            id=refund_id,
            order_id=order.id,
            amount=amount,
            diamonds=held,
            shortfall_diamonds=diamonds - held,
            reason=reason.strip()[:REASON_LENGTH_MAX] or "refunded at the provider",
            forced="true",
            status="pending",
            provider_refund_id=provider_refund_id,
            hold_id=hold_id,
            idempotency_key=key,
            request_fingerprint=None,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
    )
    move_order(session, order, pending_delta=amount, refunded_delta=0, clawed_delta=0, now=now)
    return get_refund(session, refund_id)


def move_order(
    session: Session,
    order: PaymentOrder,
    *,
    pending_delta: int,
    refunded_delta: int,
    clawed_delta: int,
    now: datetime,
) -> None:
    """Move the locked order's refund counters (and its status with them); the WHERE repeats
    what they were when it was locked (paired check)."""
    refunded = order.refunded_amount + refunded_delta
    status = order.status
    if refunded_delta:
        status = "refunded" if refunded == order.amount else "partially_refunded"
    result = session.execute(
        update(payment_orders)
        .where(
            payment_orders.c.id == order.id,
            payment_orders.c.refunded_amount == order.refunded_amount,
            payment_orders.c.refund_pending_amount == order.refund_pending_amount,
        )
        .values(
            refunded_amount=refunded,
            refund_pending_amount=order.refund_pending_amount + pending_delta,
            diamonds_clawed_back=order.diamonds_clawed_back + clawed_delta,
            status=status,
            updated_at=now,
        )
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:  # paired check: the order's refund counters moved under its lock
        raise ledger.InvariantViolated(f"order {order.id} changed under its lock")


__all__ = [
    "PROVIDER_ACTORS",
    "REASON_LENGTH_MAX",
    "RECONCILE_ATTEMPTS_MAX",
    "Refund",
    "acknowledged_due",
    "awaits_provider_id",
    "begin_refund",
    "clawback_for",
    "count_reconcile_attempt",
    "find_by_key",
    "find_by_provider_refund",
    "find_refund",
    "fingerprint",
    "get_order",
    "get_refund",
    "lock_order_row",
    "move_order",
    "refunds_of_order",
    "reserve_clawback",
    "stalled_due",
]
