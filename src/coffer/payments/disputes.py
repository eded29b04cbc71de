"""Money the provider takes back on its own: chargebacks, and refunds made in its dashboard.

Both claw back the diamonds the payment bought, in proportion, through a refund row of their own
(`refunds.reserve_clawback`): the wallet's diamonds are held, and what it no longer holds is
recorded as shortfall, booked as the user's debt (the receivable account) when final.

- A provider-side refund is final when the provider says it succeeded: it is booked as
  `complete_refund` books one (payment reversed, hold posted, debt booked), at once.
- A dispute holds while open; lost, it is booked the same way; won, the hold is voided and
  nothing was booked, so the books are as before.

Each is recorded once per provider object (`payment_disputes`, unique on the provider's id),
raises an operator alert, and only moves forward: open -> won | lost; a replayed or late event
(a `created` after `closed`) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.orm import Session

from coffer.alerts import raise_alert
from coffer.kit.ids import new_id
from coffer.payments import refund_outcomes
from coffer.payments import refunds as refund_service
from coffer.payments.refunds import Refund
from coffer.payments.service import PaymentOrder, get_order
from coffer.payments.tables import disputes

LIST_LIMIT_MAX = 500
STATUSES = ("open", "won", "lost", "closed")
FINAL = frozenset({"won", "lost", "closed"})


@dataclass(frozen=True, slots=True)
class Dispute:
    id: str
    order_id: str
    provider: str
    provider_dispute_id: str
    kind: str  # dispute | provider_refund
    status: str  # open | won | lost | closed
    amount: int
    currency: str
    diamonds: int  # held, then clawed back (or released when won)
    shortfall_diamonds: int  # what the wallet no longer held: the user's debt once booked
    refund_id: str | None
    hold_id: int | None
    reason: str | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None


def _dispute(row: Row[Any]) -> Dispute:
    m = row._mapping
    return Dispute(**{f.name: m[f.name] for f in fields(Dispute)})


def find_dispute(session: Session, *, provider: str, provider_dispute_id: str) -> Dispute | None:
    row = session.execute(
        select(disputes).where(
            disputes.c.provider == provider,
            disputes.c.provider_dispute_id == provider_dispute_id,
        )
    ).first()
    return None if row is None else _dispute(row)


def list_disputes(
    session: Session,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
    status: str | None = None,
) -> tuple[list[Dispute], bool]:
    """Newest first, keyset-paged on (created_at, id); returns (disputes, has_more)."""
    if not 0 < limit <= LIST_LIMIT_MAX:
        raise ValueError(f"limit must be 1 to {LIST_LIMIT_MAX}")
    query = select(disputes)
    if status is not None:
        query = query.where(disputes.c.status == status)
    if before is not None:
        created_at, dispute_id = before
        query = query.where(
            (disputes.c.created_at < created_at)
            | ((disputes.c.created_at == created_at) & (disputes.c.id < dispute_id))
        )
    query = query.order_by(disputes.c.created_at.desc(), disputes.c.id.desc())
    rows = session.execute(query.limit(limit + 1)).all()
    return [_dispute(r) for r in rows[:limit]], len(rows) > limit


def _left(order: PaymentOrder) -> int:
    return order.amount - order.refunded_amount - order.refund_pending_amount


def _insert(
    session: Session,
    *,
    order: PaymentOrder,
    provider_dispute_id: str,
    kind: str,
    status: str,
    amount: int,
    refund: Refund | None,
    reason: str | None,
    now: datetime,
) -> Dispute:
    dispute_id = new_id("dsp")
    session.execute(
        insert(disputes).values(
            id=dispute_id,
            order_id=order.id,
            provider=order.provider,
            provider_dispute_id=provider_dispute_id,
            kind=kind,
            status=status,
            amount=amount,
            currency=order.currency,
            diamonds=refund.diamonds if refund else 0,
            shortfall_diamonds=refund.shortfall_diamonds if refund else 0,
            refund_id=refund.id if refund else None,
            hold_id=refund.hold_id if refund else None,
            reason=(reason or None) and reason[:255],
            created_at=now,
            updated_at=now,
            resolved_at=now if status in FINAL else None,
        )
    )
    found = find_dispute(session, provider=order.provider, provider_dispute_id=provider_dispute_id)
    assert found is not None
    return found


def _alert(session: Session, dispute: Dispute, *, kind: str, severity: str, message: str) -> None:
    raise_alert(
        session,
        kind=kind,
        severity=severity,
        message=message,
        now=dispute.updated_at,
        subject_id=dispute.id,
        details={
            "order_id": dispute.order_id,
            "provider": dispute.provider,
            "provider_dispute_id": dispute.provider_dispute_id,
            "amount": dispute.amount,
            "currency": dispute.currency,
            "diamonds": dispute.diamonds,
            "shortfall_diamonds": dispute.shortfall_diamonds,
        },
    )


def record_provider_refund(
    session: Session,
    *,
    order_id: str,
    provider_refund_id: str,
    amount: int,
    reason: str | None,
    via: str,
    now: datetime,
) -> Dispute:
    """A refund the provider made that Coffer did not start (its dashboard): book it, once."""
    order = get_order(session, order_id, for_update=True)
    earlier = find_dispute(session, provider=order.provider, provider_dispute_id=provider_refund_id)
    if earlier is not None:
        return earlier
    taken = min(amount, _left(order))
    refund = None
    if taken > 0:
        refund = refund_service.reserve_clawback(
            session,
            order_id=order.id,
            amount=taken,
            reason=reason or f"refunded at {order.provider}",
            actor="provider",
            key=f"provider:{provider_refund_id}",
            provider_refund_id=provider_refund_id,
            now=now,
        )
        refund = refund_outcomes.complete_refund(
            session, refund_id=refund.id, provider_refund_id=provider_refund_id, now=now
        )
    dispute = _insert(
        session,
        order=order,
        provider_dispute_id=provider_refund_id,
        kind="provider_refund",
        status="closed",
        amount=taken,
        refund=refund,
        reason=reason,
        now=now,
    )
    over = amount - taken
    _alert(
        session,
        dispute,
        kind="refund.provider",
        severity="critical" if over else "warning",
        message=(
            f"{order.provider} refunded {amount} {order.currency} of order {order.id} outside "
            f"Coffer ({via}); {dispute.diamonds + dispute.shortfall_diamonds} diamonds clawed "
            f"back, {dispute.shortfall_diamonds} of them owed"
            + (f"; {over} more than was left to refund" if over else "")
        ),
    )
    return dispute


def open_dispute(
    session: Session,
    *,
    order_id: str,
    provider_dispute_id: str,
    amount: int | None,
    reason: str | None,
    now: datetime,
) -> Dispute:
    """A chargeback opened: hold the diamonds it would take back. Once per dispute."""
    order = get_order(session, order_id, for_update=True)
    earlier = find_dispute(
        session, provider=order.provider, provider_dispute_id=provider_dispute_id
    )
    if earlier is not None:
        return earlier  # seen already (open or decided): never back to open
    taken = min(order.amount if amount is None else amount, _left(order))
    refund = None
    if taken > 0:
        refund = refund_service.reserve_clawback(
            session,
            order_id=order.id,
            amount=taken,
            reason=f"dispute {provider_dispute_id}: {reason or 'chargeback'}",
            actor="provider:dispute",
            key=f"dispute:{provider_dispute_id}",
            provider_refund_id=None,
            now=now,
        )
    dispute = _insert(
        session,
        order=order,
        provider_dispute_id=provider_dispute_id,
        kind="dispute",
        status="open",
        amount=taken,
        refund=refund,
        reason=reason,
        now=now,
    )
    _alert(
        session,
        dispute,
        kind="dispute.opened",
        severity="warning",
        message=(
            f"a {order.provider} dispute of {taken} {order.currency} on order {order.id} is "
            f"open ({reason or 'no reason given'}); {dispute.diamonds} diamonds held"
        ),
    )
    return dispute


def resolve_dispute(
    session: Session,
    *,
    order_id: str,
    provider_dispute_id: str,
    won: bool,
    amount: int | None,
    reason: str | None,
    now: datetime,
) -> Dispute:
    """A dispute decided. Won: release what was held. Lost: book it as a refund. A decided
    dispute stays decided; one never seen open is opened first (events arrive in any order)."""
    order = get_order(session, order_id, for_update=True)
    dispute = find_dispute(
        session, provider=order.provider, provider_dispute_id=provider_dispute_id
    )
    if dispute is None:
        if won:
            # Nothing was held, so nothing to release: record the outcome only.
            dispute = _insert(
                session,
                order=order,
                provider_dispute_id=provider_dispute_id,
                kind="dispute",
                status="won",
                amount=0,
                refund=None,
                reason=reason,
                now=now,
            )
            _alert(
                session,
                dispute,
                kind="dispute.won",
                severity="info",
                message=f"a {order.provider} dispute on order {order.id} was won",
            )
            return dispute
        dispute = open_dispute(
            session,
            order_id=order_id,
            provider_dispute_id=provider_dispute_id,
            amount=amount,
            reason=reason,
            now=now,
        )
    if dispute.status in FINAL:
        return dispute
    if dispute.refund_id is not None:
        if won:
            refund_outcomes.fail_refund(
                session, refund_id=dispute.refund_id, reason="dispute won", now=now
            )
        else:
            refund_outcomes.complete_refund(
                session, refund_id=dispute.refund_id, provider_refund_id=None, now=now
            )
    status = "won" if won else "lost"
    session.execute(
        update(disputes)
        .where(disputes.c.id == dispute.id, disputes.c.status == "open")
        .values(status=status, updated_at=now, resolved_at=now)
    )
    decided = find_dispute(
        session, provider=order.provider, provider_dispute_id=provider_dispute_id
    )
    assert decided is not None
    if won:
        message = (
            f"a {order.provider} dispute on order {order.id} was won: "
            f"{decided.diamonds} held diamonds released"
        )
    else:
        message = (
            f"a {order.provider} dispute on order {order.id} was lost: "
            f"{decided.amount} {order.currency} taken back, "
            f"{decided.diamonds + decided.shortfall_diamonds} diamonds clawed back, "
            f"{decided.shortfall_diamonds} of them owed"
        )
    _alert(
        session,
        decided,
        kind=f"dispute.{status}",
        severity="info" if won else "critical",
        message=message,
    )
    return decided


__all__ = [
    "Dispute",
    "find_dispute",
    "list_disputes",
    "open_dispute",
    "record_provider_refund",
    "resolve_dispute",
]
