"""Stripe behind the Protocol, over the official `stripe` SDK (16.1.0) and its `StripeClient`.

Amounts: Stripe counts in the currency's smallest unit, as Coffer does (cents for USD, the unit
itself for zero-decimal currencies such as JPY), so amounts pass through unchanged; currency
codes go to Stripe in lower case and come back upper case.

An order is a PaymentIntent (`provider_order_id` = `pi_...`), and Coffer's `payment_id` for
Stripe is the same PaymentIntent id: refunds are made against the PaymentIntent. The client's
proof (`verify_payment`'s `signature`) is the PaymentIntent's `client_secret`, which only the
paying client was given; the PaymentIntent is then read back and must be `succeeded` for the
order's amount and currency.

Every POST carries an `Idempotency-Key` derived from Coffer's own ids (order, refund key,
payout), so the SDK's retries (`attempts_max - 1` of them, on connection errors, 409 and 5xx)
and Coffer's own retries never create a second object. Each request has an explicit
`timeout_s`. The SDK's telemetry (a per-machine id file and request metrics sent to Stripe) is
switched off when this module is imported; the switch is global to the SDK.

Webhooks are `stripe_webhooks.py`'s (the signature checked on the raw bytes, with a 300 s
tolerance); refunds carry Coffer's refund id in `metadata.coffer_refund_id`. Connected accounts,
transfers and Payouts are `stripe_connect.py`'s, Billing `stripe_billing.py`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import stripe

from coffer.errors import InvalidSignature, ProviderRejected, ProviderUnavailable
from coffer.providers import signatures, stripe_webhooks
from coffer.providers._common import (
    check_amount,
    check_currency,
    derived_key,
    optional_int,
    optional_str,
    safe_code,
    upper,
    with_provider_text,
)
from coffer.providers.base import (
    OUTBOUND_ATTEMPTS_MAX,
    OUTBOUND_TIMEOUT_S,
    OrderRequest,
    PaymentConfirmation,
    ProviderOrder,
    ProviderRefund,
    WebhookEvent,
)
from coffer.providers.stripe_billing import StripeBilling
from coffer.providers.stripe_connect import StripeConnectPayouts
from coffer.providers.stripe_webhooks import REFUND_REFERENCE_KEY, refund_reference

# Global to the SDK: no telemetry id written to disk, no request metrics sent with each call.
stripe.enable_telemetry = False

NAME = "stripe"
METADATA_VALUE_LENGTH_MAX = 500  # Stripe's limit on a metadata value
REFUNDS_PAGE_MAX = 100
_IDEMPOTENCY_KEY = r"[\x21-\x7e]{1,255}"  # printable ASCII, at most 255: Stripe's limit

REFUND_STATUSES: Mapping[str, str] = {
    "pending": "pending",
    "requires_action": "pending",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "failed",
}


class StripeProvider(StripeConnectPayouts, StripeBilling):
    """Stripe PaymentIntents and refunds; webhooks (`stripe_webhooks.py`), connected accounts,
    transfers and payouts (`stripe_connect.py`) and Billing (`stripe_billing.py`)."""

    name = NAME

    def __init__(
        self,
        *,
        api_key: str,
        publishable_key: str | None = None,
        webhook_secret: str | None = None,
        api_base: str | None = None,
        timeout_s: float = OUTBOUND_TIMEOUT_S,
        attempts_max: int = OUTBOUND_ATTEMPTS_MAX,
        tolerance_s: int = signatures.STRIPE_TOLERANCE_S,
        clock_s: Callable[[], float] | None = None,
    ) -> None:
        assert api_key, "a Stripe provider without a key is disabled, not built"
        assert timeout_s > 0 and attempts_max >= 1 and tolerance_s > 0
        self._publishable_key = publishable_key or None
        self._webhook_secret = webhook_secret or None
        self._tolerance_s = tolerance_s
        self._clock_s = clock_s
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            max_network_retries=attempts_max - 1,
            http_client=stripe.RequestsClient(timeout=timeout_s),
        )

    def public_config(self) -> Mapping[str, Any]:
        return {"publishable_key": self._publishable_key}

    # -- orders and payments -------------------------------------------------------------------

    def create_order(self, request: OrderRequest) -> ProviderOrder:
        amount = check_amount(request.amount)
        currency = check_currency(request.currency)
        metadata = {"order_id": request.order_id}
        if request.customer_id:
            metadata["customer_id"] = request.customer_id[:METADATA_VALUE_LENGTH_MAX]
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "metadata": metadata,
            "automatic_payment_methods": {"enabled": True},
        }
        if request.description:
            params["description"] = request.description[:1_000]
        key = request.idempotency_key or f"coffer-order-{request.order_id}"
        intent = self._call(
            lambda: self._client.v1.payment_intents.create(
                params,  # type: ignore[arg-type]  # a plain dict is what the SDK sends
                {"idempotency_key": _key(key)},
            )
        )
        if intent.get("amount") != amount or upper(intent.get("currency")) != currency:
            raise ProviderRejected("Stripe answered a PaymentIntent for another amount or currency")
        return ProviderOrder(
            provider=NAME,
            provider_order_id=_required_str(intent, "id"),
            amount=amount,
            currency=currency,
            checkout={
                "client_secret": _required_str(intent, "client_secret"),
                "publishable_key": self._publishable_key,
            },
        )

    def verify_payment(
        self, *, provider_order_id: str, payment_id: str, signature: str, amount: int, currency: str
    ) -> PaymentConfirmation:
        """Read the PaymentIntent back: the client's secret, then `succeeded`, amount, currency."""
        if not provider_order_id.startswith("pi_"):
            raise InvalidSignature("a Stripe order id is a PaymentIntent id (pi_...)")
        intent = self._call(
            lambda: self._client.v1.payment_intents.retrieve(
                provider_order_id,
                {"expand": ["latest_charge"]},
            )
        )
        secret = intent.get("client_secret")
        if not isinstance(secret, str) or not signatures.constant_time_equal(secret, signature):
            raise InvalidSignature("the signature is not this PaymentIntent's client secret")
        charge = intent.get("latest_charge")
        charge = charge if isinstance(charge, dict) else {"id": charge}
        if payment_id not in (intent.get("id"), charge.get("id")):
            raise InvalidSignature("the payment id is neither the PaymentIntent nor its charge")
        status = intent.get("status")
        if status != "succeeded":
            error = intent.get("last_payment_error")
            raise ProviderRejected(
                f"the PaymentIntent is {status}, not succeeded",
                status=safe_code(status),
                failure_code=safe_code(error.get("code")) if isinstance(error, dict) else None,
            )
        received = intent.get("amount_received")
        if intent.get("amount") != amount or received != amount:
            raise ProviderRejected(
                "the PaymentIntent's amount differs from the order's",
                paid_amount=optional_int(received),
            )
        if upper(intent.get("currency")) != currency:
            raise ProviderRejected("the PaymentIntent's currency differs from the order's")
        refunded = optional_int(charge.get("amount_refunded")) or 0
        return PaymentConfirmation(
            provider_order_id=provider_order_id,
            payment_id=provider_order_id,
            amount=amount,
            currency=currency,
            # Refunded already (in the dashboard, before the client came back): say which.
            refunds=tuple(self.refunds_of_payment(payment_id=provider_order_id))
            if refunded
            else (),
        )

    # -- webhooks ------------------------------------------------------------------------------

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        return stripe_webhooks.parse_webhook(
            body=body,
            headers=headers,
            secret=self._webhook_secret,
            tolerance_s=self._tolerance_s,
            clock_s=self._clock_s,
        )

    # -- money out -----------------------------------------------------------------------------

    def refund(
        self, *, payment_id: str, amount: int, currency: str, idempotency_key: str, reason: str
    ) -> ProviderRefund:
        check_amount(amount)
        check_currency(currency)
        if not idempotency_key:
            raise ProviderRejected("a refund needs an idempotency key")
        params = {
            "payment_intent": payment_id,
            "amount": amount,
            "reason": "requested_by_customer",
            "metadata": {
                "reason": reason[:METADATA_VALUE_LENGTH_MAX],
                REFUND_REFERENCE_KEY: idempotency_key[:METADATA_VALUE_LENGTH_MAX],
            },
        }
        refund = self._call(
            lambda: self._client.v1.refunds.create(
                params,  # type: ignore[arg-type]
                {"idempotency_key": _key(f"coffer-refund-{idempotency_key}")},
            )
        )
        return _provider_refund(refund, payment_id=payment_id, amount=amount, currency=currency)

    def get_refund(self, *, refund_id: str, payment_id: str) -> ProviderRefund:
        refund = self._call(lambda: self._client.v1.refunds.retrieve(refund_id))
        return _provider_refund(refund, payment_id=payment_id)

    def refunds_of_payment(self, *, payment_id: str) -> list[ProviderRefund]:
        listed = self._call(
            lambda: self._client.v1.refunds.list(
                {"payment_intent": payment_id, "limit": REFUNDS_PAGE_MAX}
            )
        )
        data = listed.get("data")
        return [
            _provider_refund(r, payment_id=payment_id)
            for r in (data if isinstance(data, list) else [])
            if isinstance(r, dict)
        ]

    # -- the boundary --------------------------------------------------------------------------

    def _call(self, request: Callable[[], Any]) -> dict[str, Any]:
        """One SDK request (the SDK retries it), its errors mapped, its answer as a dict."""
        try:
            answer = request()
        except stripe.StripeError as exc:
            raise _map_error(exc) from exc
        return dict(answer.to_dict())


def _map_error(exc: stripe.StripeError) -> Exception:
    """A Stripe SDK error as Coffer's: retry later, or the provider said no. Our sentence and
    Stripe's error code go to the client; Stripe's own words only to `str()` and the log."""
    text = exc.user_message or str(exc) or type(exc).__name__
    details = {"provider_code": safe_code(exc.code), "http_status": exc.http_status}
    if isinstance(exc, stripe.SignatureVerificationError):
        return InvalidSignature("Stripe signature verification failed")
    if isinstance(exc, stripe.APIConnectionError):
        return with_provider_text(
            ProviderUnavailable("Stripe could not be reached", **details), text
        )
    if isinstance(exc, stripe.RateLimitError):
        return with_provider_text(ProviderUnavailable("Stripe is rate limiting", **details), text)
    if isinstance(
        exc,
        stripe.InvalidRequestError
        | stripe.CardError
        | stripe.AuthenticationError
        | stripe.PermissionError
        | stripe.IdempotencyError,
    ):
        return with_provider_text(ProviderRejected("Stripe refused the request", **details), text)
    # APIError and the rest: a 5xx, a 409 still conflicting after retries, or no status at all
    # is Stripe's trouble; any other 4xx is a refusal.
    status = exc.http_status
    if status is None or status >= 500 or status == 409:
        return with_provider_text(ProviderUnavailable("Stripe failed to answer", **details), text)
    return with_provider_text(ProviderRejected("Stripe refused the request", **details), text)


def _provider_refund(
    refund: Mapping[str, Any],
    *,
    payment_id: str,
    amount: int | None = None,
    currency: str | None = None,
) -> ProviderRefund:
    status = REFUND_STATUSES.get(str(refund.get("status")))
    if status is None:
        raise ProviderRejected("Stripe answered a refund in an unknown status")
    found_amount = optional_int(refund.get("amount")) or amount
    found_currency = upper(refund.get("currency")) or currency
    if found_amount is None or found_currency is None:
        raise ProviderUnavailable("Stripe's refund has no amount or currency")
    return ProviderRefund(
        refund_id=_required_str(refund, "id"),
        payment_id=optional_str(refund.get("payment_intent")) or payment_id,
        amount=found_amount,
        currency=found_currency,
        status=status,
        reference=refund_reference(refund),
    )


def _key(value: str) -> str:
    return derived_key(value, pattern=_IDEMPOTENCY_KEY, length_max=255)


def _required_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ProviderUnavailable(f"Stripe's answer has no {key}")
    return value


__all__ = ["StripeProvider"]
