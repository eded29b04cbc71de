"""The sandbox provider: orders that pay at once, signed webhooks, instant refunds and payouts.

A full implementation of the Protocol with no network and no state, for development, demos and
tests. Everything it issues is signed or derived with HMAC from one secret, so it needs no table
to remember what it said:

- `create_order` answers `mock_order_...` and a checkout `{"payment_id", "signature"}`: the
  signature is HMAC-SHA256 of `"{order}|{payment}|{amount}|{currency}"` under a checkout key, so
  `verify_payment` can check the amount and currency without having stored them.
- Webhooks are JSON `{"id", "type", "created", "data"}` with `X-Mock-Signature: t=...,v1=...`,
  the same scheme as Stripe's, so a replay is refused after `tolerance_s` (300 s).
  `build_webhook` makes them; `parse_webhook` checks and reads them. The event types are the
  `EventKind` values themselves ("payment.succeeded", "refund.succeeded", ...).
- Ids are derived from their inputs (Coffer's order id, the refund's idempotency key, Coffer's
  payout id), so calling twice with the same input returns the same id: idempotent by
  construction.
- Payees are active at once; their id carries the outcome their payouts will have (the
  sandbox keeps nothing), and so does a payout's id, for `fetch_payout`.
- Refunds succeed at once. Payouts are paid at once, except that a destination can ask for the
  failure paths: a bank account number ending in "0000" (or a VPA starting "fail") is answered
  `failed`, one ending in "9999" (or a VPA starting "down") raises ProviderUnavailable.

The secret. `COFFER_MOCK_WEBHOOK_SECRET` when set (give it to every process of a deployment);
otherwise a random secret drawn once per process, which nobody outside the process can know, so
no one can forge a mock webhook or checkout signature, while everything this process issues
still verifies in it. The checkout key is derived from the webhook secret with a label, so a
checkout signature can never pass for a webhook signature or the other way round.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from coffer.errors import InvalidSignature, ProviderRejected, ProviderUnavailable
from coffer.providers import signatures
from coffer.providers._common import (
    check_amount,
    check_body_size,
    check_currency,
    from_unix,
    header,
    load_event,
    optional_int,
    optional_str,
)
from coffer.providers.base import (
    EventKind,
    OrderRequest,
    PayeePayoutRequest,
    PayeeRequest,
    PaymentConfirmation,
    PayoutRequest,
    ProviderOrder,
    ProviderPayee,
    ProviderPayout,
    ProviderRefund,
    ProviderSubscription,
    SubscriptionRequest,
    WebhookEvent,
)

NAME = "mock"
SIGNATURE_HEADER = "X-Mock-Signature"
FAILING_ACCOUNT_SUFFIX = "0000"  # a payout to an account number ending so is answered "failed"
UNAVAILABLE_ACCOUNT_SUFFIX = "9999"  # ... and one ending so raises ProviderUnavailable
FAILING_VPA_PREFIX = "fail"
UNAVAILABLE_VPA_PREFIX = "down"
_ID_HEX_LENGTH = 24  # 96 bits of HMAC output: unique enough for ids, short enough to read

# Drawn once per process when no secret is configured: see the module docstring.
_PROCESS_SECRET = secrets.token_hex(32)


class MockProvider:
    """The sandbox provider. `webhook_secret=None` uses this process's random secret."""

    name = NAME

    def __init__(
        self,
        *,
        webhook_secret: str | None = None,
        tolerance_s: int = signatures.TIMESTAMPED_TOLERANCE_S,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        self._secret = webhook_secret or _PROCESS_SECRET
        self.secret_is_ephemeral = not webhook_secret
        self._checkout_key = signatures.hmac_sha256_hex(self._secret, b"coffer mock checkout key")
        self._tolerance_s = tolerance_s
        self._clock_s = clock_s

    def public_config(self) -> Mapping[str, Any]:
        return {"sandbox": True}

    # -- orders and payments -------------------------------------------------------------------

    def create_order(self, request: OrderRequest) -> ProviderOrder:
        amount = check_amount(request.amount)
        currency = check_currency(request.currency)
        if not request.order_id:
            raise ProviderRejected("an order needs Coffer's order id")
        order_id = self._derive("mock_order", f"order|{request.order_id}")
        payment_id = self._derive("mock_pay", f"payment|{order_id}")
        return ProviderOrder(
            provider=NAME,
            provider_order_id=order_id,
            amount=amount,
            currency=currency,
            checkout={
                "payment_id": payment_id,
                "signature": self._checkout_signature(order_id, payment_id, amount, currency),
            },
        )

    def verify_payment(
        self, *, provider_order_id: str, payment_id: str, signature: str, amount: int, currency: str
    ) -> PaymentConfirmation:
        expected = self._checkout_signature(provider_order_id, payment_id, amount, currency)
        if not signatures.constant_time_equal(expected, signature):
            raise InvalidSignature(
                "the payment signature does not match this order, payment, amount and currency"
            )
        return PaymentConfirmation(
            provider_order_id=provider_order_id,
            payment_id=payment_id,
            amount=amount,
            currency=currency,
        )

    # -- webhooks ------------------------------------------------------------------------------

    def build_webhook(
        self,
        kind: EventKind | str,
        *,
        provider_order_id: str | None = None,
        payment_id: str | None = None,
        refund_id: str | None = None,
        payout_id: str | None = None,
        amount: int | None = None,
        currency: str | None = None,
        failure_reason: str | None = None,
        dispute_id: str | None = None,
        reference: str | None = None,
        event_id: str | None = None,
        timestamp_s: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A signed webhook as the sandbox would deliver it: `(raw body, headers)`.

        `timestamp_s` (default: now) dates the signature, to test stale deliveries.
        """
        created_s = int(self._clock_s()) if timestamp_s is None else timestamp_s
        data = {
            "provider_order_id": provider_order_id,
            "payment_id": payment_id,
            "refund_id": refund_id,
            "payout_id": payout_id,
            "amount": amount,
            "currency": currency,
            "failure_reason": failure_reason,
            "dispute_id": dispute_id,
            "reference": reference,
            **(extra or {}),
        }
        event = {
            "id": event_id or f"mock_evt_{secrets.token_hex(12)}",
            "type": str(kind),
            "created": created_s,
            "data": {key: value for key, value in data.items() if value is not None},
        }
        body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode("utf-8")
        signature = signatures.sign_timestamped(body, secrets=self._secret, timestamp=created_s)
        return body, {"Content-Type": "application/json", SIGNATURE_HEADER: signature}

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        check_body_size(body)
        signatures.verify_timestamped(
            body,
            header=header(headers, SIGNATURE_HEADER),
            secret=self._secret,
            tolerance_s=self._tolerance_s,
            now_s=self._clock_s(),
            what="mock webhook",
        )
        event = load_event(body)
        event_id, event_type = event.get("id"), event.get("type")
        if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
            raise ProviderRejected("the mock event has no id or type")
        data = event.get("data")
        data = data if isinstance(data, dict) else {}
        try:
            kind = EventKind(event_type)
        except ValueError:
            kind = EventKind.IGNORED
        return WebhookEvent(
            provider=NAME,
            event_id=event_id,
            kind=kind,
            provider_type=event_type,
            occurred_at=from_unix(event.get("created")),
            provider_order_id=optional_str(data.get("provider_order_id")),
            payment_id=optional_str(data.get("payment_id")),
            refund_id=optional_str(data.get("refund_id")),
            payout_id=optional_str(data.get("payout_id")),
            amount=optional_int(data.get("amount")),
            currency=optional_str(data.get("currency")),
            failure_reason=optional_str(data.get("failure_reason")),
            dispute_id=optional_str(data.get("dispute_id")),
            reference=optional_str(data.get("reference")),
            data=data,
            subscription_id=optional_str(data.get("subscription_id")),
            period_start_unix=optional_int(data.get("period_start_unix")),
            period_end_unix=optional_int(data.get("period_end_unix")),
        )

    # -- money out -----------------------------------------------------------------------------

    def refund(
        self, *, payment_id: str, amount: int, currency: str, idempotency_key: str, reason: str
    ) -> ProviderRefund:
        check_amount(amount)
        check_currency(currency)
        # An order settled by a webhook that named no payment has none: the sandbox refunds it
        # all the same. A payment id from another provider is refused.
        if payment_id and not payment_id.startswith("mock_pay_"):
            raise ProviderRejected(f"no such mock payment: {payment_id!r}")
        if not idempotency_key:
            raise ProviderRejected("a refund needs an idempotency key")
        return ProviderRefund(
            refund_id=self._derive("mock_rfnd", f"refund|{payment_id}|{idempotency_key}"),
            payment_id=payment_id,
            amount=amount,
            currency=currency,
            status="succeeded",
            reference=idempotency_key,
        )

    def get_refund(self, *, refund_id: str, payment_id: str) -> ProviderRefund:
        # The sandbox keeps nothing, and its refunds are never left pending to ask about.
        raise ProviderRejected("the mock provider keeps no refunds to look up", refund_id=refund_id)

    def refunds_of_payment(self, *, payment_id: str) -> list[ProviderRefund]:
        return []  # nothing is ever refunded at the sandbox but through Coffer

    def payout(self, request: PayoutRequest) -> ProviderPayout:
        check_amount(request.amount)
        check_currency(request.currency)
        if not request.payout_id:
            raise ProviderRejected("a payout needs Coffer's payout id")
        outcome = _payout_outcome(request.destination)
        payout_id = self._derive("mock_pout", f"payout|{request.payout_id}")
        if outcome == "unavailable":
            raise ProviderUnavailable("the mock bank is down for this destination (test trigger)")
        failed = outcome == "failed"
        return ProviderPayout(
            payout_id=payout_id,
            amount=request.amount,
            currency=request.currency,
            status="failed" if failed else "paid",
            failure_reason="beneficiary account closed (test trigger)" if failed else None,
        )

    def create_payee(self, request: PayeeRequest) -> ProviderPayee:
        destination = request.destination
        outcome = (
            "paid" if destination.get("type") == "stripe_account" else _payout_outcome(destination)
        )
        marker = {"paid": "", "failed": "fail_", "unavailable": "down_"}[outcome]
        digest = self._derive("x", f"payee|{request.user_id}|{sorted(destination.items())}")
        return ProviderPayee(account_id=f"mock_fa_{marker}{digest[2:]}", status="active")

    def create_payout(self, request: PayeePayoutRequest) -> ProviderPayout:
        check_amount(request.amount)
        check_currency(request.currency)
        if not request.account_id.startswith("mock_fa_") or not request.idempotency_key:
            raise ProviderRejected("no such mock payee", account_id=request.account_id[:64])
        if request.account_id.startswith("mock_fa_down_"):
            raise ProviderUnavailable("the mock bank is down for this destination (test trigger)")
        failed = request.account_id.startswith("mock_fa_fail_")
        digest = self._derive("x", f"payee-payout|{request.idempotency_key}")[2:]
        return _mock_payout(
            f"mock_pout_{'f_' if failed else ''}{digest}",
            amount=request.amount,
            currency=request.currency,
            reference=request.payout_id,
        )

    def fetch_payout(self, *, payout_id: str) -> ProviderPayout:
        # What a sandbox payout became is written in its id; its amount is not kept.
        raise ProviderRejected(
            "the mock provider keeps no payouts to look up (they settle at once)",
            payout_id=payout_id[:64],
        )

    # -- recurring billing ---------------------------------------------------------------------

    def create_subscription(self, request: SubscriptionRequest) -> ProviderSubscription:
        """A sandbox subscription, named from Coffer's id; nothing is charged until a
        `subscription.charged` webhook (`build_webhook`) says a period was paid."""
        check_amount(request.amount)
        check_currency(request.currency)
        if not request.subscription_id:
            raise ProviderRejected("a subscription needs Coffer's subscription id")
        subscription_id = self._derive("mock_sub", f"subscription|{request.subscription_id}")
        return ProviderSubscription(
            provider=NAME,
            provider_subscription_id=subscription_id,
            status="created",
            checkout={"subscription_id": subscription_id},
        )

    def cancel_subscription(self, *, provider_subscription_id: str) -> ProviderSubscription:
        if not provider_subscription_id.startswith("mock_sub_"):
            raise ProviderRejected(f"no such mock subscription: {provider_subscription_id!r}")
        return ProviderSubscription(
            provider=NAME,
            provider_subscription_id=provider_subscription_id,
            status="active",
            cancel_at_period_end=True,
        )

    # -- internals -----------------------------------------------------------------------------

    def _checkout_signature(
        self, order_id: str, payment_id: str, amount: int, currency: str
    ) -> str:
        message = f"{order_id}|{payment_id}|{amount}|{currency}".encode()
        return signatures.hmac_sha256_hex(self._checkout_key, message)

    def _derive(self, prefix: str, value: str) -> str:
        digest = signatures.hmac_sha256_hex(self._checkout_key, value.encode("utf-8"))
        return f"{prefix}_{digest[:_ID_HEX_LENGTH]}"


def _mock_payout(payout_id: str, *, amount: int, currency: str, reference: str) -> ProviderPayout:
    failed = payout_id.startswith("mock_pout_f_")
    return ProviderPayout(
        payout_id=payout_id,
        amount=amount,
        currency=currency,
        status="failed" if failed else "paid",
        failure_reason="beneficiary account closed (test trigger)" if failed else None,
        reference=reference,
    )


def _payout_outcome(destination: Mapping[str, Any]) -> str:
    """'paid', 'failed' or 'unavailable' for a destination; ProviderRejected when malformed."""
    kind = destination.get("type")
    if kind == "bank_account":
        number = destination.get("account_number")
        if not isinstance(number, str) or not number.isalnum() or not 5 <= len(number) <= 35:
            raise ProviderRejected(
                "a bank account destination needs a 5-35 character account_number"
            )
        if number.endswith(FAILING_ACCOUNT_SUFFIX):
            return "failed"
        if number.endswith(UNAVAILABLE_ACCOUNT_SUFFIX):
            return "unavailable"
        return "paid"
    if kind == "vpa":
        address = destination.get("address")
        if not isinstance(address, str) or address.count("@") != 1 or len(address) > 100:
            raise ProviderRejected("a VPA destination needs an address like name@bank")
        if address.startswith(FAILING_VPA_PREFIX):
            return "failed"
        if address.startswith(UNAVAILABLE_VPA_PREFIX):
            return "unavailable"
        return "paid"
    raise ProviderRejected("a payout destination's type is 'bank_account' or 'vpa'")


__all__ = [
    "FAILING_ACCOUNT_SUFFIX",
    "SIGNATURE_HEADER",
    "UNAVAILABLE_ACCOUNT_SUFFIX",
    "MockProvider",
]
