"""Invariant 6 of DESIGN.md: every succeeded payment order is credited exactly once, and every
refund reverses at most what was paid."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from coffer import ledger
from coffer.payments.service import LEDGER_SOURCE, SETTLED, order_from_row
from coffer.payments.tables import payment_orders, refunds

PAGE_SIZE = 500
NAME = "every succeeded payment is credited exactly once; refunds reverse at most what was paid"


def check_payments(session: Session) -> ledger.Check:
    check = ledger.Check(6, NAME)
    after = ""
    while True:
        rows = session.execute(
            select(payment_orders)
            .where(payment_orders.c.id > after)
            .order_by(payment_orders.c.id)
            .limit(PAGE_SIZE)
        ).all()
        if not rows:
            return check
        after = rows[-1].id
        orders = [order_from_row(r) for r in rows]
        keys = [f"{o.id}:{part}" for o in orders for part in ("payment", "credit", "bonus")]
        made = ledger.find_by_idempotency(session, source=LEDGER_SOURCE, keys=keys)
        refund_rows = session.execute(
            select(refunds).where(refunds.c.order_id.in_([o.id for o in orders]))
        ).all()
        by_order: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        reversal_keys = []
        for r in refund_rows:
            by_order[r.order_id][r.status] += r.amount
            if r.status == "succeeded":
                reversal_keys.append((r.order_id, r.amount, f"{r.id}:payment"))
        reversals = ledger.find_by_idempotency(
            session, source=LEDGER_SOURCE, keys=[k for _, _, k in reversal_keys]
        )
        for order_id, amount, key in reversal_keys:
            reversal = reversals.get(key)
            if reversal is None or reversal.amount != amount:
                check.fail(f"order {order_id}: refund {key.split(':')[0]} is not in the ledger")
        for order in orders:
            payment = made.get(f"{order.id}:payment")
            credit = made.get(f"{order.id}:credit")
            bonus = made.get(f"{order.id}:bonus")
            if order.status in SETTLED:
                if payment is None or payment.amount != order.amount:
                    check.fail(f"order {order.id} is {order.status} but its payment is not booked")
                if payment is not None and order.payment_transfer_id != payment.id:
                    check.fail(f"order {order.id} names another payment transfer")
            elif payment:
                check.fail(f"order {order.id} is {order.status} but the ledger booked it")
            if order.purpose == "topup":
                # What a top-up bought; other purposes check their own (escrow/verify.py).
                if order.status in SETTLED:
                    if credit is None or credit.amount != order.diamonds:
                        check.fail(f"order {order.id} is {order.status} but was not credited")
                    if order.bonus and (bonus is None or bonus.amount != order.bonus):
                        check.fail(f"order {order.id}: its bonus was not credited")
                    if credit is not None and order.credit_transfer_id != credit.id:
                        check.fail(f"order {order.id} names another credit transfer")
                elif credit or bonus:
                    check.fail(f"order {order.id} is {order.status} but the ledger credited it")
            sums = by_order.get(order.id, {})
            if order.refunded_amount != sums.get("succeeded", 0):
                check.fail(f"order {order.id}: refunded_amount differs from its refunds")
            if order.refund_pending_amount != sums.get("pending", 0):
                check.fail(f"order {order.id}: refund_pending_amount differs from its refunds")
            if order.refunded_amount + order.refund_pending_amount > order.amount:
                check.fail(f"order {order.id}: refunds exceed what was paid")
