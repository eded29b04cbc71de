"""Recurring-billing webhooks (Razorpay `subscription.*`, Stripe `invoice.*` and
`customer.subscription.deleted`, the mock's `subscription.*`), applied in the inbox's
transaction under the writer's lock. A charge books its period once, whatever order the events
arrive in and however often; a failure or an end never moves a state backwards."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from coffer.providers.base import EventKind, WebhookEvent
from coffer.subscriptions import billing
from coffer.subscriptions import service as subscriptions
from coffer.subscriptions.periods import from_unix
from coffer.webhooks.errors import PermanentWebhookError, RetryableWebhookError

KINDS = frozenset(
    {
        EventKind.SUBSCRIPTION_CHARGED,
        EventKind.SUBSCRIPTION_PAYMENT_FAILED,
        EventKind.SUBSCRIPTION_CANCELLED,
        EventKind.SUBSCRIPTION_HALTED,
    }
)


def apply(session: Session, event: WebhookEvent, *, now: datetime) -> str:
    """Apply one recurring-billing event; "processed" or "ignored"."""
    assert event.kind in KINDS
    if not event.subscription_id:
        raise PermanentWebhookError("the event names no subscription")
    sub = subscriptions.find_by_provider(
        session, provider=event.provider, provider_subscription_id=event.subscription_id
    )
    if sub is None:
        # Ours may not be committed yet (the provider can be quick), or it is not Coffer's.
        raise RetryableWebhookError(f"no subscription {event.subscription_id} yet")
    if event.kind is EventKind.SUBSCRIPTION_CHARGED:
        if event.period_start_unix is None or event.period_end_unix is None:
            raise PermanentWebhookError("the charge names no period")
        if event.period_end_unix <= event.period_start_unix:
            raise PermanentWebhookError("the charged period ends before it starts")
        if event.amount is not None and event.amount != sub.price:
            raise PermanentWebhookError(
                f"the charge of {event.amount} differs from the plan's price {sub.price}"
            )
        if event.currency is not None and event.currency.upper() != sub.currency:
            raise PermanentWebhookError("the charge's currency differs from the plan's")
        booked = billing.apply_charge(
            session,
            sub,
            start=from_unix(event.period_start_unix),
            end=from_unix(event.period_end_unix),
            amount=sub.price,
            payment_id=event.payment_id,
            now=now,
        )
        return "processed" if booked else "ignored"
    if event.kind is EventKind.SUBSCRIPTION_PAYMENT_FAILED:
        start = None if event.period_start_unix is None else from_unix(event.period_start_unix)
        changed = billing.apply_payment_failed(
            session,
            sub,
            start=start,
            reason=event.failure_reason or "the provider could not charge the period",
            now=now,
        )
        return "processed" if changed else "ignored"
    status = "canceled" if event.kind is EventKind.SUBSCRIPTION_CANCELLED else "expired"
    changed = billing.apply_ended(session, sub, status=status, now=now)
    return "processed" if changed else "ignored"
