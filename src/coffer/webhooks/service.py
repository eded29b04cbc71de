"""The webhook inbox. An event is stored (once: provider + event id is unique) before anything
is done with it, then processed in its own transaction that also marks it processed, so it is
acted on exactly once; failures are retried with backoff up to `ATTEMPTS_MAX` times.

States never move backwards because the payment and refund functions this dispatches to only
move forward (`payments/service.py`); a replayed or late event is a no-op there too.

Refund events are matched to Coffer's refunds by the provider's refund id, else by the Coffer
refund id the provider echoes (Stripe metadata, Razorpay notes); one that is neither is a refund
made at the provider, clawed back as `payments/disputes.py` says, as are dispute events.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, select, update
from sqlalchemy.orm import Session

from coffer.db import dialect
from coffer.payments import disputes as payment_disputes
from coffer.payments import refund_outcomes, settlement
from coffer.payments import refunds as payment_refunds
from coffer.payments import service as payments
from coffer.payments.refunds import Refund
from coffer.payouts import payees as payout_payees
from coffer.payouts import records as payout_records
from coffer.payouts import settlement as payout_settlement
from coffer.providers.base import EventKind, WebhookEvent
from coffer.webhooks import subscription_events
from coffer.webhooks.errors import PermanentWebhookError, RetryableWebhookError
from coffer.webhooks.tables import inbox

ATTEMPTS_MAX = 8
BACKOFF_BASE_S = 5
BACKOFF_MAX_S = 3_600
ERROR_LENGTH_MAX = 500
DUE_BATCH_MAX = 100


@dataclasses.dataclass(frozen=True, slots=True)
class InboxEntry:
    id: int
    provider: str
    event_id: str
    status: str
    attempts: int
    last_error: str | None
    event: WebhookEvent
    received_at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Processed:
    """What `process` did: `outcome` ("processed", "ignored", "done"); `lag_s` from the event's
    receipt to now, None when it had been settled before ("done")."""

    outcome: str
    provider: str
    lag_s: float | None


def _event_to_json(event: WebhookEvent) -> str:
    data = dataclasses.asdict(event)
    data["kind"] = event.kind.value
    data["occurred_at"] = event.occurred_at.isoformat() if event.occurred_at else None
    data["data"] = dict(event.data)
    return json.dumps(data, sort_keys=True, default=str)


def _event_from_json(text: str) -> WebhookEvent:
    data: dict[str, Any] = json.loads(text)
    data["kind"] = EventKind(data["kind"])
    occurred = data.get("occurred_at")
    data["occurred_at"] = datetime.fromisoformat(occurred) if occurred else None
    data["requirements"] = tuple(data.get("requirements") or ())
    return WebhookEvent(**data)


def _entry(row: Row[Any]) -> InboxEntry:
    return InboxEntry(
        id=row.id,
        provider=row.provider,
        event_id=row.event_id,
        status=row.status,
        attempts=row.attempts,
        last_error=row.last_error,
        event=_event_from_json(row.event),
        received_at=row.received_at,
    )


def receive(
    session: Session, *, event: WebhookEvent, raw_body: bytes, now: datetime
) -> tuple[int, bool]:
    """Store a verified event unless seen before; returns (inbox id, whether it is new)."""
    status = "ignored" if event.kind is EventKind.IGNORED else "received"
    result = session.execute(
        dialect.insert(session, inbox)
        .values(
            provider=event.provider,
            event_id=event.event_id,
            provider_type=event.provider_type[:64],
            kind=event.kind.value,
            event=_event_to_json(event),
            raw_body=raw_body,
            status=status,
            occurred_at=event.occurred_at,
            received_at=now,
            processed_at=now if status == "ignored" else None,
            next_attempt_at=None if status == "ignored" else now,
        )
        .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        .returning(inbox.c.id)
    ).first()
    if result is not None:
        return result.id, status == "received"
    row = session.execute(
        select(inbox.c.id).where(
            inbox.c.provider == event.provider, inbox.c.event_id == event.event_id
        )
    ).one()
    return row.id, False


def get_entry(session: Session, inbox_id: int, *, for_update: bool = False) -> InboxEntry:
    query = select(inbox).where(inbox.c.id == inbox_id)
    if for_update:
        query = query.with_for_update()
    return _entry(session.execute(query).one())


def process(session: Session, *, inbox_id: int, now: datetime) -> Processed:
    """Apply one stored event, once; returns what happened."""
    entry = get_entry(session, inbox_id, for_update=True)
    if entry.status != "received":
        return Processed("done", entry.provider, None)  # settled earlier: never twice
    outcome = _dispatch(session, entry.event, now=now)
    session.execute(
        update(inbox)
        .where(inbox.c.id == inbox_id)
        .values(
            status=outcome,
            processed_at=now,
            attempts=entry.attempts + 1,
            next_attempt_at=None,
            last_error=None,
        )
    )
    return Processed(outcome, entry.provider, (now - entry.received_at).total_seconds())


def _dispatch(session: Session, event: WebhookEvent, *, now: datetime) -> str:
    kind = event.kind
    if kind in (
        EventKind.PAYMENT_SUCCEEDED,
        EventKind.PAYMENT_FAILED,
        EventKind.PAYMENT_PROCESSING,
        EventKind.PAYMENT_CANCELLED,
    ):
        if not event.provider_order_id:
            raise PermanentWebhookError("the event names no order")
        order = payments.find_by_provider_order(
            session, provider=event.provider, provider_order_id=event.provider_order_id
        )
        if order is None:
            # Our order may not be committed yet (the provider can be quick): retry.
            raise RetryableWebhookError(f"no order {event.provider_order_id} yet")
        if kind is EventKind.PAYMENT_SUCCEEDED:
            if event.amount is not None and event.amount != order.amount:
                raise PermanentWebhookError(
                    f"the event's amount {event.amount} differs from the order's {order.amount}"
                )
            if event.currency is not None and event.currency.upper() != order.currency:
                raise PermanentWebhookError("the event's currency differs from the order's")
            settlement.credit_order(
                session, order_id=order.id, payment_id=event.payment_id, via="webhook", now=now
            )
        elif kind is EventKind.PAYMENT_FAILED:
            payments.mark_failed(
                session,
                order_id=order.id,
                reason=event.failure_reason,
                payment_id=event.payment_id,
                now=now,
            )
        elif kind is EventKind.PAYMENT_PROCESSING:
            payments.mark_pending(session, order_id=order.id, now=now)
        else:
            payments.mark_cancelled(session, order_id=order.id, now=now)
        return "processed"
    if kind in (EventKind.REFUND_SUCCEEDED, EventKind.REFUND_FAILED):
        return _apply_refund_event(session, event, now=now)
    if kind in (EventKind.DISPUTE_OPENED, EventKind.DISPUTE_WON, EventKind.DISPUTE_LOST):
        return _apply_dispute_event(session, event, now=now)
    if kind in _PAYOUT_STATUSES:
        return _apply_payout_event(session, event, now=now)
    if kind is EventKind.PAYEE_UPDATED:
        if not event.payee_id or event.payee_status is None:
            raise PermanentWebhookError("the payee event names no account or status")
        moved = payout_payees.apply_payee_event(
            session,
            provider=event.provider,
            account_id=event.payee_id,
            status=event.payee_status,
            requirements=event.requirements,
            now=now,
        )
        return "processed" if moved else "ignored"
    if kind in subscription_events.KINDS:
        return subscription_events.apply(session, event, now=now)
    # Other events are kept, verified, in the inbox; nothing in Coffer acts on them.
    return "ignored"


_PAYOUT_STATUSES = {
    EventKind.PAYOUT_PROCESSING: "processing",
    EventKind.PAYOUT_PAID: "paid",
    EventKind.PAYOUT_FAILED: "failed",
    EventKind.PAYOUT_CANCELLED: "cancelled",
    EventKind.PAYOUT_REVERSED: "reversed",
}


def _apply_payout_event(session: Session, event: WebhookEvent, *, now: datetime) -> str:
    """Settle a payout by its provider's report, forward only (`payout_settlement.settle`)."""
    payout, other_attempt = payout_records.find_for_event(
        session,
        provider=event.provider,
        provider_payout_id=event.payout_id,
        reference=event.reference,
    )
    if other_attempt:
        return "ignored"  # about an earlier attempt of a payout retried since
    if payout is None:
        # Our booking of the provider's answer may not be committed yet: retry.
        raise RetryableWebhookError(f"no payout {event.payout_id or event.reference} yet")
    if event.amount is not None and event.amount != payout.payout_amount:
        raise PermanentWebhookError(
            f"the event's amount {event.amount} differs from payout {payout.id}'s "
            f"{payout.payout_amount}"
        )
    if event.currency is not None and event.currency.upper() != payout.payout_currency:
        raise PermanentWebhookError("the event's currency differs from the payout's")
    before = payout.status
    settled = payout_settlement.settle(
        session,
        payout_id=payout.id,
        status=_PAYOUT_STATUSES[event.kind],
        provider_payout_id=event.payout_id,
        reason=event.failure_reason,
        now=now,
    )
    return "processed" if settled.status != before else "ignored"


def _paid_order(session: Session, event: WebhookEvent) -> payments.PaymentOrder:
    """The settled order an event's payment paid, or an error saying when to look again."""
    if not event.payment_id:
        raise PermanentWebhookError("the event names no payment")
    order = payments.find_by_payment(session, provider=event.provider, payment_id=event.payment_id)
    if order is None or order.status not in payments.SETTLED:
        # Not credited yet (its own event may be behind this one), or not Coffer's: retry,
        # and after ATTEMPTS_MAX it is parked for the operator.
        raise RetryableWebhookError(f"no settled order for payment {event.payment_id} yet")
    if event.currency is not None and event.currency.upper() != order.currency:
        raise PermanentWebhookError("the event's currency differs from the order's")
    return order


def _our_refund(session: Session, event: WebhookEvent) -> Refund | None:
    """The refund of Coffer's an event is about: by the provider's id, or, when that is not
    stored yet (the webhook beat the provider's answer), by the id Coffer sent along."""
    if event.refund_id:
        refund = payment_refunds.find_by_provider_refund(session, event.refund_id)
        if refund is not None:
            return refund
    if event.reference:
        refund = payment_refunds.find_refund(session, event.reference)
        if refund is not None:
            order = payments.get_order(session, refund.order_id)
            if order.provider == event.provider and (
                event.payment_id is None
                or event.payment_id in (order.provider_payment_id, order.provider_order_id)
            ):
                return refund
    return None


def _apply_refund_event(session: Session, event: WebhookEvent, *, now: datetime) -> str:
    refund = _our_refund(session, event)
    succeeded = event.kind is EventKind.REFUND_SUCCEEDED
    if refund is not None:
        if event.amount is not None and event.amount != refund.amount:
            raise PermanentWebhookError(
                f"the event's refund amount {event.amount} differs from refund {refund.id}'s "
                f"{refund.amount}"
            )
        if succeeded:
            if refund.status == "failed":
                raise PermanentWebhookError(
                    f"the provider reports refund {refund.id} succeeded, but it was failed here"
                )
            refund_outcomes.complete_refund(
                session, refund_id=refund.id, provider_refund_id=event.refund_id, now=now
            )
        else:
            # Pending: released. Succeeded before: the booking is undone (the money came back).
            refund_outcomes.reverse_refund(
                session,
                refund_id=refund.id,
                reason=event.failure_reason or "the provider failed the refund",
                now=now,
            )
        return "processed"
    if not succeeded or not event.refund_id:
        # A refund Coffer never booked failed, or one it cannot name: nothing to undo.
        return "ignored"
    # Made outside Coffer (the provider's dashboard): the money has left, claw back.
    order = _paid_order(session, event)
    if event.amount is None:
        raise PermanentWebhookError("the provider's refund event has no amount")
    if payment_refunds.awaits_provider_id(session, order_id=order.id, amount=event.amount):
        # It may be Coffer's own refund whose answer is not stored yet (a provider that does
        # not echo Coffer's id): retry through the inbox rather than claw back twice.
        raise RetryableWebhookError(
            f"a refund of {event.amount} on order {order.id} awaits the provider's id"
        )
    payment_disputes.record_provider_refund(
        session,
        order_id=order.id,
        provider_refund_id=event.refund_id,
        amount=event.amount,
        reason=event.failure_reason,
        via=f"webhook {event.provider_type}",
        now=now,
    )
    return "processed"


def _apply_dispute_event(session: Session, event: WebhookEvent, *, now: datetime) -> str:
    if not event.dispute_id:
        raise PermanentWebhookError("the dispute event names no dispute")
    order = _paid_order(session, event)
    if event.kind is EventKind.DISPUTE_OPENED:
        payment_disputes.open_dispute(
            session,
            order_id=order.id,
            provider_dispute_id=event.dispute_id,
            amount=event.amount,
            reason=event.failure_reason,
            now=now,
        )
    else:
        payment_disputes.resolve_dispute(
            session,
            order_id=order.id,
            provider_dispute_id=event.dispute_id,
            won=event.kind is EventKind.DISPUTE_WON,
            amount=event.amount,
            reason=event.failure_reason,
            now=now,
        )
    return "processed"


def record_failure(
    session: Session, *, inbox_id: int, error: BaseException, now: datetime
) -> tuple[str, str] | None:
    """Count a failed attempt; back off exponentially; park it after ATTEMPTS_MAX. Returns
    (provider, "retry" or "parked"), or None if it was settled meanwhile."""
    entry = get_entry(session, inbox_id, for_update=True)
    if entry.status != "received":
        return None
    attempts = entry.attempts + 1
    permanent = isinstance(error, PermanentWebhookError) or attempts >= ATTEMPTS_MAX
    message = getattr(error, "message", None) or type(error).__name__
    delay_s = min(BACKOFF_BASE_S * 2 ** (attempts - 1), BACKOFF_MAX_S)
    session.execute(
        update(inbox)
        .where(inbox.c.id == inbox_id)
        .values(
            attempts=attempts,
            last_error=str(message)[:ERROR_LENGTH_MAX],
            status="failed" if permanent else "received",
            next_attempt_at=None if permanent else now + timedelta(seconds=delay_s),
        )
    )
    return entry.provider, "parked" if permanent else "retry"


def due(*, now: datetime, limit: int = DUE_BATCH_MAX) -> Select[Any]:
    """Events waiting for a retry whose time has come, oldest first (ids, for
    `db.claims.claim`)."""
    assert 0 < limit <= DUE_BATCH_MAX * 10
    return (
        select(inbox.c.id)
        .where(inbox.c.status == "received", inbox.c.next_attempt_at <= now)
        .order_by(inbox.c.next_attempt_at, inbox.c.id)
        .limit(limit)
    )
