"""Razorpay behind the Protocol, over the official `razorpay` SDK (2.0.1).

Amounts: Razorpay counts INR in paise, the same minor units Coffer uses, so amounts pass
through unchanged; only currency codes are checked.

Calls and their safety on retry:
- orders (`POST /v1/orders`) have no idempotency key at Razorpay: one attempt, and a
  ProviderUnavailable tells the caller that an order may or may not exist;
- reads (`GET /v1/payments/{id}`) are retried up to `attempts_max`;
- refunds carry `X-Refund-Idempotency` and payouts `X-Payout-Idempotency`, derived from the
  caller's key and Coffer's payout id, so they are retried too and never doubled.
The SDK's own retry loop is left off (it prints and sleeps up to a minute); every call carries an
explicit `timeout_s`.

Webhooks (`razorpay_webhooks.py`): the signature is checked on the raw bytes before anything is
parsed, and a PAYMENT_FAILED from Razorpay is not final. Refunds carry Coffer's refund id in
`notes.coffer_refund_id`.

Payouts go through RazorpayX (`razorpay_payouts.py`), from the business account
`COFFER_RAZORPAY_PAYOUT_ACCOUNT_NUMBER`; Subscriptions are `razorpay_billing.py`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import razorpay
import razorpay.errors
import requests

from coffer.errors import InvalidSignature, ProviderRejected, ProviderUnavailable
from coffer.providers import razorpay_webhooks, signatures
from coffer.providers._common import (
    check_amount,
    check_currency,
    derived_key,
    optional_int,
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
from coffer.providers.razorpay_billing import RazorpayBilling
from coffer.providers.razorpay_payouts import RazorpayXPayouts
from coffer.providers.razorpay_webhooks import REFUND_REFERENCE_NOTE, refund_reference

NAME = "razorpay"
RETRY_BACKOFF_S = 0.25  # first pause between attempts; doubles each time
RETRY_BACKOFF_MAX_S = 2.0
NOTE_LENGTH_MAX = 256  # Razorpay caps each note value at 256 characters
REFUNDS_PAGE_MAX = 100
_REFUND_KEY = r"[A-Za-z0-9_-]{10,36}"  # X-Refund-Idempotency: at least 10 of these

REFUND_STATUSES: Mapping[str, str] = {
    "pending": "pending",
    "processed": "succeeded",
    "failed": "failed",
}

T = TypeVar("T")


class RazorpayProvider(RazorpayXPayouts, RazorpayBilling):
    """Razorpay orders, checkout signatures and refunds; webhooks (`razorpay_webhooks.py`),
    RazorpayX payees and payouts (`razorpay_payouts.py`) and Subscriptions
    (`razorpay_billing.py`)."""

    name = NAME

    def __init__(
        self,
        *,
        key_id: str,
        key_secret: str,
        webhook_secret: str | None = None,
        api_base: str | None = None,
        payout_account_number: str | None = None,
        timeout_s: float = OUTBOUND_TIMEOUT_S,
        attempts_max: int = OUTBOUND_ATTEMPTS_MAX,
        retry_backoff_s: float = RETRY_BACKOFF_S,
    ) -> None:
        assert key_id and key_secret, "a Razorpay provider without keys is disabled, not built"
        assert timeout_s > 0 and attempts_max >= 1 and retry_backoff_s >= 0
        self._key_id = key_id
        self._key_secret = key_secret
        self._webhook_secret = webhook_secret or None
        self._payout_account_number = payout_account_number or None
        self._timeout_s = timeout_s
        self._attempts_max = attempts_max
        self._retry_backoff_s = retry_backoff_s
        options: dict[str, Any] = {}
        if api_base:
            # The SDK joins base_url and "/v1/..." as strings: the base has no path and no "/".
            options["base_url"] = api_base.rstrip("/")
        self._client = razorpay.Client(auth=(key_id, key_secret), **options)

    def public_config(self) -> Mapping[str, Any]:
        return {"key_id": self._key_id}

    # -- orders and payments -------------------------------------------------------------------

    def create_order(self, request: OrderRequest) -> ProviderOrder:
        amount = check_amount(request.amount)
        currency = check_currency(request.currency)
        notes = {"order_id": request.order_id}
        if request.customer_id:
            notes["customer_id"] = request.customer_id
        if request.description:
            notes["description"] = request.description[:NOTE_LENGTH_MAX]
        order = self._call(
            self._client.order.create,
            {"amount": amount, "currency": currency, "receipt": request.order_id, "notes": notes},
            retry=False,
        )
        order_id = _required_str(order, "id")
        if order.get("amount") != amount or order.get("currency") != currency:
            raise ProviderRejected("Razorpay answered an order for another amount or currency")
        return ProviderOrder(
            provider=NAME,
            provider_order_id=order_id,
            amount=amount,
            currency=currency,
            checkout={
                "key_id": self._key_id,
                "order_id": order_id,
                "amount": amount,
                "currency": currency,
            },
        )

    def verify_payment(
        self, *, provider_order_id: str, payment_id: str, signature: str, amount: int, currency: str
    ) -> PaymentConfirmation:
        """Check Checkout's signature, then that Razorpay holds this payment captured.

        An authorised payment is captured here (Razorpay refunds an uncaptured one after a few
        days); a captured one is only read.
        """
        signatures.verify_razorpay_payment(
            order_id=provider_order_id,
            payment_id=payment_id,
            signature=signature,
            key_secret=self._key_secret,
        )
        payment = self._fetch_payment(payment_id)
        if payment.get("order_id") != provider_order_id:
            raise ProviderRejected("the payment belongs to another order", payment_id=payment_id)
        if payment.get("amount") != amount or payment.get("currency") != currency:
            raise ProviderRejected(
                "the payment's amount or currency differs from the order's",
                payment_id=payment_id,
                paid_amount=optional_int(payment.get("amount")),
                paid_currency=safe_code(payment.get("currency")),
            )
        status = payment.get("status")
        if status == "authorized":
            payment = self._capture(payment_id, amount=amount, currency=currency)
            status = payment.get("status")
        refunded = optional_int(payment.get("amount_refunded")) or 0
        # "refunded" is only reached from "captured": the payment was made, refunds are separate.
        if status not in ("captured", "refunded"):
            raise ProviderRejected(
                f"the payment is {safe_code(status)}, not captured",
                payment_id=payment_id,
                status=safe_code(status),
                failure_code=safe_code(payment.get("error_reason"))
                or safe_code(payment.get("error_code")),
            )
        return PaymentConfirmation(
            provider_order_id=provider_order_id,
            payment_id=payment_id,
            amount=amount,
            currency=currency,
            # Refunded already (from the dashboard, before the client came back): say which.
            refunds=tuple(self.refunds_of_payment(payment_id=payment_id)) if refunded else (),
        )

    def _fetch_payment(self, payment_id: str) -> dict[str, Any]:
        return self._call(self._client.payment.fetch, payment_id, retry=True)

    def _capture(self, payment_id: str, *, amount: int, currency: str) -> dict[str, Any]:
        try:
            return self._call(
                self._client.payment.capture,
                payment_id,
                amount,
                {"currency": currency},
                retry=False,
            )
        except ProviderRejected:
            # Razorpay's auto-capture may have won the race: "already captured" is success.
            payment = self._fetch_payment(payment_id)
            if payment.get("status") == "captured":
                return payment
            raise

    # -- webhooks ------------------------------------------------------------------------------

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        return razorpay_webhooks.parse_webhook(
            body=body, headers=headers, secret=self._webhook_secret
        )

    # -- money out -----------------------------------------------------------------------------

    def refund(
        self, *, payment_id: str, amount: int, currency: str, idempotency_key: str, reason: str
    ) -> ProviderRefund:
        check_amount(amount)
        check_currency(currency)
        if not idempotency_key:
            raise ProviderRejected("a refund needs an idempotency key")
        key = derived_key(idempotency_key, pattern=_REFUND_KEY, length_max=36)
        notes = {
            "reason": reason[:NOTE_LENGTH_MAX],
            REFUND_REFERENCE_NOTE: idempotency_key[:NOTE_LENGTH_MAX],
        }
        refund = self._call(
            self._client.payment.refund,
            payment_id,
            {"amount": amount, "notes": notes},
            headers={"X-Refund-Idempotency": key},
            retry=True,
        )
        return _provider_refund(refund, payment_id=payment_id, amount=amount, currency=currency)

    def get_refund(self, *, refund_id: str, payment_id: str) -> ProviderRefund:
        refund = self._call(self._client.refund.fetch, refund_id, retry=True)
        return _provider_refund(refund, payment_id=payment_id)

    def refunds_of_payment(self, *, payment_id: str) -> list[ProviderRefund]:
        listed = self._call(
            self._client.payment.fetch_multiple_refund,
            payment_id,
            {"count": REFUNDS_PAGE_MAX},
            retry=True,
        )
        items = listed.get("items")
        return [
            _provider_refund(r, payment_id=payment_id)
            for r in (items if isinstance(items, list) else [])
            if isinstance(r, dict)
        ]

    # -- the boundary --------------------------------------------------------------------------

    def _call(
        self,
        method: Callable[..., Any],
        *args: Any,
        retry: bool,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One SDK call with a timeout, its errors mapped; retried when `retry` says it is safe."""
        attempts_max = self._attempts_max if retry else 1
        for attempt in range(1, attempts_max + 1):
            options: dict[str, Any] = {"timeout": self._timeout_s}
            if headers:
                options["headers"] = dict(headers)  # the SDK writes into it: a fresh copy
            try:
                result = method(*args, **options)
            except Exception as exc:
                mapped = _map_error(exc)
                if mapped is None:
                    raise  # not the SDK's or the network's: a bug, shown as it is
                if isinstance(mapped, ProviderUnavailable) and attempt < attempts_max:
                    time.sleep(min(self._retry_backoff_s * 2 ** (attempt - 1), RETRY_BACKOFF_MAX_S))
                    continue
                raise mapped from exc
            if not isinstance(result, dict):
                raise ProviderUnavailable("Razorpay answered something that is not a JSON object")
            return result
        raise AssertionError("unreachable: the last attempt returns or raises")


def _map_error(exc: Exception) -> Exception | None:
    """Razorpay's and requests' exceptions as Coffer's (the caller raises `from exc`). Razorpay's
    own words go only to `str()` and the log, never to the client."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, razorpay.errors.SignatureVerificationError):
        return InvalidSignature("Razorpay signature verification failed")
    if isinstance(exc, razorpay.errors.BadRequestError):
        return with_provider_text(ProviderRejected("Razorpay refused the request"), text)
    if isinstance(exc, razorpay.errors.ServerError | razorpay.errors.GatewayError):
        return with_provider_text(ProviderUnavailable("Razorpay failed to answer"), text)
    if isinstance(exc, requests.Timeout):
        return ProviderUnavailable("Razorpay did not answer in time")
    if isinstance(exc, requests.RequestException):
        # Connection refused or reset, TLS, or an answer that is not JSON (a proxy's 502 page).
        return ProviderUnavailable(f"Razorpay could not be reached: {type(exc).__name__}")
    return None


def _provider_refund(
    refund: Mapping[str, Any],
    *,
    payment_id: str,
    amount: int | None = None,
    currency: str | None = None,
) -> ProviderRefund:
    status = REFUND_STATUSES.get(str(refund.get("status")))
    if status is None:
        raise ProviderRejected(
            "Razorpay answered a refund in an unknown status",
            provider_status=safe_code(refund.get("status")),
        )
    found_amount = optional_int(refund.get("amount")) or amount
    found_currency = upper(refund.get("currency")) or currency
    if found_amount is None or found_currency is None:
        raise ProviderUnavailable("Razorpay's refund has no amount or currency")
    return ProviderRefund(
        refund_id=_required_str(refund, "id"),
        payment_id=str(refund.get("payment_id") or payment_id),
        amount=found_amount,
        currency=found_currency,
        status=status,
        reference=refund_reference(refund),
    )


def _required_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ProviderUnavailable(f"Razorpay's answer has no {key}")
    return value


__all__ = ["RazorpayProvider"]
