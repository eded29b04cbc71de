"""Razorpay Subscriptions behind the Protocol: a mixin of `RazorpayProvider` (which supplies
`_client`, `_key_id` and `_call`), kept apart so the adapter stays readable.

- A Coffer plan becomes a Razorpay plan (`POST /v1/plans`) the first time this process sells
  it; the id is kept for the process (a second process makes its own, which is harmless).
- A subscription (`POST /v1/subscriptions`) carries Coffer's id in `notes`; the client opens
  Checkout with `key_id` and `subscription_id` to authorise the mandate. Razorpay has no
  idempotency key for either call: one attempt each, as for orders.
- Cancelling (`POST /v1/subscriptions/{id}/cancel`, `cancel_at_cycle_end=1`) stops charges
  after the paid cycle.
- Webhooks: `subscription.charged` books the cycle `current_start`..`current_end` of the
  subscription entity it carries, paid by its payment entity; `subscription.pending` (a charge
  failed, Razorpay retries) is a failure of the cycle starting `current_start`;
  `subscription.halted` (its retries ran out) ends it as expired, `subscription.cancelled` and
  `subscription.completed` as canceled. The rest (`authenticated`, `activated`, ...) are kept
  and ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import razorpay

from coffer.errors import ProviderUnavailable
from coffer.providers._common import (
    check_amount,
    check_currency,
    from_unix,
    optional_int,
    optional_str,
    upper,
)
from coffer.providers.base import (
    EventKind,
    ProviderSubscription,
    SubscriptionRequest,
    WebhookEvent,
)

NAME = "razorpay"
PERIODS = {"month": "monthly", "year": "yearly"}
# Razorpay needs a number of cycles: ten years of either.
TOTAL_COUNTS = {"month": 120, "year": 10}
SUBSCRIPTION_NOTE = "coffer_subscription_id"
NOTE_LENGTH_MAX = 256
SUBSCRIPTION_EVENT_KINDS: Mapping[str, EventKind] = {
    "subscription.charged": EventKind.SUBSCRIPTION_CHARGED,
    "subscription.pending": EventKind.SUBSCRIPTION_PAYMENT_FAILED,
    "subscription.halted": EventKind.SUBSCRIPTION_HALTED,
    "subscription.cancelled": EventKind.SUBSCRIPTION_CANCELLED,
    "subscription.completed": EventKind.SUBSCRIPTION_CANCELLED,
}


class RazorpayBilling:
    """Razorpay Subscriptions for `RazorpayProvider` (see the module docstring)."""

    _client: razorpay.Client
    _key_id: str
    _call: Callable[..., dict[str, Any]]

    def create_subscription(self, request: SubscriptionRequest) -> ProviderSubscription:
        amount = check_amount(request.amount)
        currency = check_currency(request.currency)
        plan_id = self._razorpay_plan(request, amount=amount, currency=currency)
        notes = {
            SUBSCRIPTION_NOTE: request.subscription_id[:NOTE_LENGTH_MAX],
            "customer_id": request.customer_id[:NOTE_LENGTH_MAX],
            "plan_id": request.plan_id[:NOTE_LENGTH_MAX],
        }
        subscription = self._call(
            self._client.subscription.create,
            {
                "plan_id": plan_id,
                "total_count": TOTAL_COUNTS[request.interval],
                "customer_notify": 1,
                "notes": notes,
            },
            retry=False,
        )
        subscription_id = _required_str(subscription, "id")
        return ProviderSubscription(
            provider=NAME,
            provider_subscription_id=subscription_id,
            status=str(subscription.get("status") or "created"),
            checkout={"key_id": self._key_id, "subscription_id": subscription_id},
        )

    def cancel_subscription(self, *, provider_subscription_id: str) -> ProviderSubscription:
        subscription = self._call(
            self._client.subscription.cancel,
            provider_subscription_id,
            {"cancel_at_cycle_end": 1},
            retry=True,  # cancelling twice is cancelling
        )
        return ProviderSubscription(
            provider=NAME,
            provider_subscription_id=_required_str(subscription, "id"),
            status=str(subscription.get("status") or ""),
            cancel_at_period_end=True,
        )

    def _razorpay_plan(self, request: SubscriptionRequest, *, amount: int, currency: str) -> str:
        plans: dict[tuple[str, str, int, str], str] = self.__dict__.setdefault(
            "_razorpay_plans", {}
        )
        key = (request.plan_id, request.interval, amount, currency)
        known = plans.get(key)
        if known is not None:
            return known
        plan = self._call(
            self._client.plan.create,
            {
                "period": PERIODS[request.interval],
                "interval": 1,
                "item": {
                    "name": (request.plan_name or request.plan_id)[:NOTE_LENGTH_MAX],
                    "amount": amount,
                    "currency": currency,
                },
                "notes": {"coffer_plan_id": request.plan_id[:NOTE_LENGTH_MAX]},
            },
            retry=False,
        )
        plans[key] = _required_str(plan, "id")
        return plans[key]


def translate_subscription_event(
    *,
    event_type: str,
    event_id: str,
    occurred_at: Any,
    subscription: Mapping[str, Any],
    payment: Mapping[str, Any],
    event: dict[str, Any],
) -> WebhookEvent:
    """A `subscription.*` event as Coffer's (see the module docstring)."""
    kind = SUBSCRIPTION_EVENT_KINDS.get(event_type, EventKind.IGNORED)
    charged = kind is EventKind.SUBSCRIPTION_CHARGED
    return WebhookEvent(
        provider=NAME,
        event_id=event_id,
        kind=kind,
        provider_type=event_type,
        occurred_at=from_unix(occurred_at),
        subscription_id=optional_str(subscription.get("id")),
        payment_id=optional_str(payment.get("id")),
        amount=optional_int(payment.get("amount")) if charged else None,
        currency=upper(payment.get("currency")) if charged else None,
        failure_reason=optional_str(payment.get("error_description")),
        period_start_unix=optional_int(subscription.get("current_start")),
        period_end_unix=optional_int(subscription.get("current_end")) if charged else None,
        data=event,
    )


def _required_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ProviderUnavailable(f"Razorpay's answer has no {key}")
    return value


__all__ = ["RazorpayBilling", "translate_subscription_event"]
