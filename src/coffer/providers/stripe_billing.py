"""Stripe Billing behind the Protocol: a mixin of `StripeProvider` (which supplies `_client`,
`_publishable_key` and `_call`), kept apart so the adapter stays readable.

- A subscription is a Customer (`POST /v1/customers`), a recurring Price for the plan
  (`POST /v1/prices` with `product_data`, made once per process and plan, with an idempotency
  key derived from the plan so processes share it), and a Subscription
  (`POST /v1/subscriptions`, `payment_behavior=default_incomplete`,
  `expand[]=latest_invoice.payment_intent`): the client confirms the first invoice's
  PaymentIntent with its `client_secret`. Every POST carries an `Idempotency-Key` derived from
  Coffer's subscription id, so retries never make a second one.
- Cancelling sets `cancel_at_period_end=true`: no further invoice, access to the period's end.
- Webhooks: `invoice.paid` books the period of the invoice's first line (`period.start` ..
  `period.end`; the invoice's own `period_*` name the previous period for renewals) for the
  invoice's subscription (`subscription`, or `parent.subscription_details.subscription` in
  newer API versions); `invoice.payment_failed` is a failure of that period (Stripe retries by
  its own schedule); `customer.subscription.deleted` ends it. An invoice without a
  subscription is ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import stripe

from coffer.errors import ProviderRejected, ProviderUnavailable
from coffer.providers._common import (
    check_amount,
    check_currency,
    derived_key,
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

NAME = "stripe"
METADATA_VALUE_LENGTH_MAX = 500
_IDEMPOTENCY_KEY = r"[\x21-\x7e]{1,255}"
BILLING_EVENT_KINDS: Mapping[str, EventKind] = {
    "invoice.paid": EventKind.SUBSCRIPTION_CHARGED,
    "invoice.payment_failed": EventKind.SUBSCRIPTION_PAYMENT_FAILED,
    "customer.subscription.deleted": EventKind.SUBSCRIPTION_CANCELLED,
}


def is_billing_event(event_type: str) -> bool:
    return event_type.startswith("invoice.") or event_type.startswith("customer.subscription.")


class StripeBilling:
    """Stripe Billing for `StripeProvider` (see the module docstring)."""

    _client: stripe.StripeClient
    _publishable_key: str | None
    _call: Callable[[Callable[[], Any]], dict[str, Any]]

    def create_subscription(self, request: SubscriptionRequest) -> ProviderSubscription:
        amount = check_amount(request.amount)
        currency = check_currency(request.currency)
        key = f"coffer-subscription-{request.subscription_id}"
        metadata = {
            "coffer_subscription_id": request.subscription_id[:METADATA_VALUE_LENGTH_MAX],
            "coffer_user_id": request.customer_id[:METADATA_VALUE_LENGTH_MAX],
        }
        customer = self._call(
            lambda: self._client.v1.customers.create(
                {"metadata": metadata}, {"idempotency_key": _key(f"{key}-customer")}
            )
        )
        customer_id = _required_str(customer, "id")
        price_id = self._stripe_price(request, amount=amount, currency=currency)
        params = {
            "customer": customer_id,
            "items": [{"price": price_id}],
            "payment_behavior": "default_incomplete",
            "payment_settings": {"save_default_payment_method": "on_subscription"},
            "expand": ["latest_invoice.payment_intent"],
            "metadata": {**metadata, "coffer_plan_id": request.plan_id},
        }
        subscription = self._call(
            lambda: self._client.v1.subscriptions.create(
                params,  # type: ignore[arg-type]  # a plain dict is what the SDK sends
                {"idempotency_key": _key(key)},
            )
        )
        invoice = subscription.get("latest_invoice")
        intent = invoice.get("payment_intent") if isinstance(invoice, dict) else None
        secret = intent.get("client_secret") if isinstance(intent, dict) else None
        if not isinstance(secret, str) or not secret:
            raise ProviderRejected("Stripe answered a subscription without a first PaymentIntent")
        return ProviderSubscription(
            provider=NAME,
            provider_subscription_id=_required_str(subscription, "id"),
            status=str(subscription.get("status") or "incomplete"),
            checkout={"client_secret": secret, "publishable_key": self._publishable_key},
            customer_id=customer_id,
        )

    def cancel_subscription(self, *, provider_subscription_id: str) -> ProviderSubscription:
        subscription = self._call(
            lambda: self._client.v1.subscriptions.update(
                provider_subscription_id, {"cancel_at_period_end": True}
            )
        )
        return ProviderSubscription(
            provider=NAME,
            provider_subscription_id=_required_str(subscription, "id"),
            status=str(subscription.get("status") or ""),
            cancel_at_period_end=bool(subscription.get("cancel_at_period_end")),
        )

    def _stripe_price(self, request: SubscriptionRequest, *, amount: int, currency: str) -> str:
        prices: dict[tuple[str, str, int, str], str] = self.__dict__.setdefault(
            "_stripe_prices", {}
        )
        key = (request.plan_id, request.interval, amount, currency)
        known = prices.get(key)
        if known is not None:
            return known
        params = {
            "currency": currency.lower(),
            "unit_amount": amount,
            "recurring": {"interval": request.interval},
            "product_data": {"name": (request.plan_name or request.plan_id)[:250]},
            "metadata": {"coffer_plan_id": request.plan_id},
        }
        name = f"coffer-price-{request.plan_id}-{request.interval}-{amount}-{currency}"
        idempotency_key = _key(name)
        price = self._call(
            lambda: self._client.v1.prices.create(
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            )
        )
        prices[key] = _required_str(price, "id")
        return prices[key]


def translate_billing_event(
    *, event_id: str, event_type: str, created: Any, obj: Mapping[str, Any], event: dict[str, Any]
) -> WebhookEvent:
    """An `invoice.*` or `customer.subscription.*` event as Coffer's."""
    kind = BILLING_EVENT_KINDS.get(event_type, EventKind.IGNORED)
    fields: dict[str, Any] = {}
    if event_type.startswith("invoice."):
        subscription_id = _invoice_subscription(obj)
        if subscription_id is None:
            kind = EventKind.IGNORED  # a one-off invoice: not a subscription's
        lines = obj.get("lines")
        listed = lines.get("data") if isinstance(lines, dict) else None
        first = listed[0] if isinstance(listed, list) and listed else {}
        period = first.get("period") if isinstance(first, dict) else None
        period = period if isinstance(period, dict) else {}
        paid = kind is EventKind.SUBSCRIPTION_CHARGED
        error = obj.get("last_finalization_error")
        fields = {
            "subscription_id": subscription_id,
            "payment_id": optional_str(obj.get("payment_intent")) or optional_str(obj.get("id")),
            "amount": optional_int(obj.get("amount_paid")) if paid else None,
            "currency": upper(obj.get("currency")),
            "period_start_unix": optional_int(period.get("start")),
            "period_end_unix": optional_int(period.get("end")),
            "failure_reason": optional_str(error.get("message"))
            if isinstance(error, dict)
            else None,
        }
    else:
        fields = {"subscription_id": optional_str(obj.get("id"))}
    return WebhookEvent(
        provider=NAME,
        event_id=event_id,
        kind=kind,
        provider_type=event_type,
        occurred_at=from_unix(created),
        data=event,
        **fields,
    )


def _invoice_subscription(invoice: Mapping[str, Any]) -> str | None:
    found = invoice.get("subscription")
    if isinstance(found, dict):
        found = found.get("id")
    if isinstance(found, str) and found:
        return found
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    nested = details.get("subscription") if isinstance(details, dict) else None
    return nested if isinstance(nested, str) and nested else None


def _key(value: str) -> str:
    return derived_key(value, pattern=_IDEMPOTENCY_KEY, length_max=255)


def _required_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ProviderUnavailable(f"Stripe's answer has no {key}")
    return value


__all__ = ["StripeBilling", "is_billing_event", "translate_billing_event"]
