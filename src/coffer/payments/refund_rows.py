"""Refund rows: what a refund is, and the reads the refund steps and jobs make of them.

`refunds.py` has the steps that move money; this module only reads (and counts a
reconciliation attempt), so the API's lists and the jobs' claims need nothing more.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, select, update
from sqlalchemy.orm import Session

from coffer.errors import NotFound
from coffer.payments.service import PaymentOrder
from coffer.payments.tables import refunds

REASON_LENGTH_MAX = 255
RECONCILE_ATTEMPTS_MAX = 10
# `created_by` of the refunds the provider made on its own (payments/disputes.py).
PROVIDER_ACTORS = ("provider", "provider:dispute")


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    order_id: str
    amount: int
    diamonds: int  # reserved, then clawed back, from the wallet
    shortfall_diamonds: int  # booked as the user's debt (forced refunds only)
    reason: str
    forced: bool
    status: str
    provider_refund_id: str | None
    hold_id: int | None
    failure_reason: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime


def refund_from_row(row: Row[Any]) -> Refund:
    m = row._mapping
    return Refund(
        id=m["id"],
        order_id=m["order_id"],
        amount=m["amount"],
        diamonds=m["diamonds"],
        shortfall_diamonds=m["shortfall_diamonds"],
        reason=m["reason"],
        forced=m["forced"] == "true",
        status=m["status"],
        provider_refund_id=m["provider_refund_id"],
        hold_id=m["hold_id"],
        failure_reason=m["failure_reason"],
        created_by=m["created_by"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def get_refund(session: Session, refund_id: str, *, for_update: bool = False) -> Refund:
    query = select(refunds).where(refunds.c.id == refund_id)
    if for_update:
        query = query.with_for_update()
    row = session.execute(query).first()
    if row is None:
        raise NotFound(f"no refund {refund_id!r}", refund_id=refund_id)
    return refund_from_row(row)


def find_by_key(session: Session, *, order_id: str, idempotency_key: str) -> Refund | None:
    """The refund of `order_id` that a request with this idempotency key began, if any."""
    row = session.execute(
        select(refunds).where(
            refunds.c.order_id == order_id, refunds.c.idempotency_key == idempotency_key
        )
    ).first()
    return None if row is None else refund_from_row(row)


def find_by_provider_refund(session: Session, provider_refund_id: str) -> Refund | None:
    row = session.execute(
        select(refunds).where(refunds.c.provider_refund_id == provider_refund_id)
    ).first()
    return None if row is None else refund_from_row(row)


def find_refund(session: Session, refund_id: str) -> Refund | None:
    row = session.execute(select(refunds).where(refunds.c.id == refund_id)).first()
    return None if row is None else refund_from_row(row)


def awaits_provider_id(session: Session, *, order_id: str, amount: int) -> bool:
    """Whether a refund Coffer started for this amount is pending without the provider's id:
    a provider refund that names no Coffer refund may be that one, before its id is stored."""
    row = session.execute(
        select(refunds.c.id)
        .where(
            refunds.c.order_id == order_id,
            refunds.c.status == "pending",
            refunds.c.provider_refund_id.is_(None),
            refunds.c.amount == amount,
            refunds.c.created_by.not_in(PROVIDER_ACTORS),
        )
        .limit(1)
    ).first()
    return row is not None


def refunds_of_order(session: Session, order_id: str) -> list[Refund]:
    rows = session.execute(
        select(refunds).where(refunds.c.order_id == order_id).order_by(refunds.c.created_at)
    )
    return [refund_from_row(r) for r in rows]


def stalled_due(*, older_than: datetime, limit: int) -> Select[Any]:
    """Pending refunds the provider has not acknowledged, untouched since `older_than` (ids, for
    `db.claims.claim`). Those the provider started (an open dispute's reservation) are not
    Coffer's to send."""
    return (
        select(refunds.c.id)
        .where(
            refunds.c.status == "pending",
            refunds.c.provider_refund_id.is_(None),
            refunds.c.updated_at < older_than,
            refunds.c.created_by.not_in(PROVIDER_ACTORS),
        )
        .order_by(refunds.c.updated_at, refunds.c.id)
        .limit(limit)
    )


def acknowledged_due(*, older_than: datetime, limit: int) -> Select[Any]:
    """Pending refunds the provider acknowledged (it named them) but never settled (ids)."""
    return (
        select(refunds.c.id)
        .where(
            refunds.c.status == "pending",
            refunds.c.provider_refund_id.is_not(None),
            refunds.c.updated_at < older_than,
            refunds.c.reconcile_attempts < RECONCILE_ATTEMPTS_MAX,
        )
        .order_by(refunds.c.updated_at, refunds.c.id)
        .limit(limit)
    )


def count_reconcile_attempt(session: Session, *, refund_id: str, now: datetime) -> int:
    """One more time the reconciler asked about this refund; returns the new count."""
    session.execute(
        update(refunds)
        .where(refunds.c.id == refund_id)
        .values(reconcile_attempts=refunds.c.reconcile_attempts + 1, updated_at=now)
    )
    count: int = session.execute(
        select(refunds.c.reconcile_attempts).where(refunds.c.id == refund_id)
    ).scalar_one()
    return count


def fingerprint(*, amount: int | None, reason: str, force: bool) -> str:
    canonical = json.dumps({"amount": amount, "reason": reason, "force": force}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def clawback_for(order: PaymentOrder, *, refunded_before: int, amount: int) -> int:
    """Diamonds this refund takes back: the cumulative proportional share, rounded down, so the
    last refund of an order takes back exactly what is left."""
    total = order.diamonds_total
    before = total * refunded_before // order.amount
    after = total * (refunded_before + amount) // order.amount
    return after - before
