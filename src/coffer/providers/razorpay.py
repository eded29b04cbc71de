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

Webhooks: the signature (`X-Razorpay-Signature`) is checked on the raw bytes before anything is
parsed; the event is named for the inbox by what that signature covers (its type, time and
entity ids), not by the unsigned `X-Razorpay-Event-Id` header. Razorpay may send
`payment.failed` and later `payment.captured` for the same payment (a late authorisation): a
PAYMENT_FAILED from Razorpay is therefore not final, and whoever applies events must let a later
PAYMENT_SUCCEEDED win over it. Refunds carry Coffer's refund id in `notes.coffer_refund_id`;
`payment.dispute.*` become DISPUTE_OPENED / WON / LOST (`closed` is lost when Razorpay deducted
an amount, else released).

Payouts go through RazorpayX (`POST /v1/payouts`, composite: contact and fund account inline),
from the business account `COFFER_RAZORPAY_PAYOUT_ACCOUNT_NUMBER`. The SDK has no payouts
resource, so the client's own `post` is used, which keeps its auth, base URL and error mapping.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import razorpay
import razorpay.errors
import requests

from coffer.errors import (
    BadRequest,
    InvalidSignature,
    ProviderDisabled,
    ProviderRejected,
    ProviderUnavailable,
)
from coffer.providers import signatures
from coffer.providers._common import (
    check_amount,
    check_body_size,
    check_currency,
    derived_key,
    from_unix,
    header,
    load_event,
    optional_int,
    optional_str,
    safe_code,
    upper,
    with_provider_text,
)
from coffer.providers.base import (
    OUTBOUND_ATTEMPTS_MAX,
    OUTBOUND_TIMEOUT_S,
    EventKind,
    OrderRequest,
    PaymentConfirmation,
    PayoutRequest,
    ProviderOrder,
    ProviderPayout,
    ProviderRefund,
    WebhookEvent,
)
from coffer.providers.razorpay_billing import RazorpayBilling, translate_subscription_event
from coffer.providers.razorpay_payouts import RazorpayXPayouts, payout_reference

NAME = "razorpay"
SIGNATURE_HEADER = "X-Razorpay-Signature"
EVENT_ID_HEADER = "X-Razorpay-Event-Id"
RETRY_BACKOFF_S = 0.25  # first pause between attempts; doubles each time
RETRY_BACKOFF_MAX_S = 2.0
NOTE_LENGTH_MAX = 256  # Razorpay caps each note value at 256 characters
REFUND_REFERENCE_NOTE = "coffer_refund_id"  # Coffer's refund id, in the refund's notes
REFUNDS_PAGE_MAX = 100
NARRATION_LENGTH_MAX = 30  # RazorpayX: alphanumerics and spaces, at most 30
_PAYOUT_KEY = r"[A-Za-z0-9 _-]{4,36}"  # X-Payout-Idempotency: 4-36 of these
_REFUND_KEY = r"[A-Za-z0-9_-]{10,36}"  # X-Refund-Idempotency: at least 10 of these

EVENT_KINDS: Mapping[str, EventKind] = {
    "payment.authorized": EventKind.PAYMENT_PROCESSING,
    "payment.captured": EventKind.PAYMENT_SUCCEEDED,
    "order.paid": EventKind.PAYMENT_SUCCEEDED,
    "payment.failed": EventKind.PAYMENT_FAILED,  # not final: see the module docstring
    "refund.processed": EventKind.REFUND_SUCCEEDED,
    "refund.failed": EventKind.REFUND_FAILED,
    "payment.dispute.created": EventKind.DISPUTE_OPENED,
    "payment.dispute.under_review": EventKind.DISPUTE_OPENED,
    "payment.dispute.action_required": EventKind.DISPUTE_OPENED,
    "payment.dispute.won": EventKind.DISPUTE_WON,
    "payment.dispute.lost": EventKind.DISPUTE_LOST,
    # payment.dispute.closed: lost if Razorpay deducted anything, else released (see _translate)
    "payout.initiated": EventKind.PAYOUT_PROCESSING,
    "payout.processed": EventKind.PAYOUT_PAID,
    "payout.failed": EventKind.PAYOUT_FAILED,
    "payout.rejected": EventKind.PAYOUT_FAILED,
    "payout.reversed": EventKind.PAYOUT_REVERSED,
}
REFUND_STATUSES: Mapping[str, str] = {
    "pending": "pending",
    "processed": "succeeded",
    "failed": "failed",
}
PAYOUT_STATUSES: Mapping[str, str] = {
    "queued": "pending",
    "pending": "pending",
    "scheduled": "pending",
    "processing": "processing",
    "processed": "paid",
    "reversed": "reversed",
    "failed": "failed",
    "rejected": "failed",
    "cancelled": "failed",
}

T = TypeVar("T")


class RazorpayProvider(RazorpayXPayouts, RazorpayBilling):
    """Razorpay orders, checkout signatures, webhooks and refunds; RazorpayX payees and payouts
    (`razorpay_payouts.py`) and Subscriptions (`razorpay_billing.py`)."""

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
        if self._webhook_secret is None:
            raise ProviderDisabled(
                "Razorpay webhooks are off: COFFER_RAZORPAY_WEBHOOK_SECRET is not set",
                missing=["COFFER_RAZORPAY_WEBHOOK_SECRET"],
            )
        check_body_size(body)
        signatures.verify_razorpay_webhook(
            body, signature=header(headers, SIGNATURE_HEADER), secret=self._webhook_secret
        )
        event = load_event(body)
        event_type = event.get("event")
        if not isinstance(event_type, str) or not event_type:
            raise BadRequest("the Razorpay event has no type")
        payload = event.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        event_id = _event_id(event_type, event, payload, body)
        if event_type.startswith("subscription."):
            return translate_subscription_event(
                event_type=event_type,
                event_id=event_id,
                occurred_at=event.get("created_at"),
                subscription=_entity(payload, "subscription"),
                payment=_entity(payload, "payment"),
                event=event,
            )
        return _translate(
            event_type=event_type,
            event_id=event_id,
            occurred_at=event.get("created_at"),
            payment=_entity(payload, "payment"),
            order=_entity(payload, "order"),
            refund=_entity(payload, "refund"),
            payout=_entity(payload, "payout"),
            dispute=_entity(payload, "dispute"),
            event=event,
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

    def payout(self, request: PayoutRequest) -> ProviderPayout:
        if self._payout_account_number is None:
            raise ProviderDisabled(
                "Razorpay payouts are off: COFFER_RAZORPAY_PAYOUT_ACCOUNT_NUMBER is not set",
                missing=["COFFER_RAZORPAY_PAYOUT_ACCOUNT_NUMBER"],
            )
        amount = check_amount(request.amount)
        currency = check_currency(request.currency)
        fund_account, mode = _fund_account(request.destination, reference_id=request.payout_id)
        narration = re.sub(r"[^A-Za-z0-9 ]", " ", request.description or "Coffer payout")
        body = {
            "account_number": self._payout_account_number,
            "amount": amount,
            "currency": currency,
            "mode": mode,
            "purpose": "payout",
            "fund_account": fund_account,
            "queue_if_low_balance": True,
            "reference_id": request.payout_id[:40],
            "narration": narration.strip()[:NARRATION_LENGTH_MAX] or "Coffer payout",
            "notes": {"payout_id": request.payout_id[:NOTE_LENGTH_MAX]},
        }
        key = derived_key(request.payout_id, pattern=_PAYOUT_KEY, length_max=36)
        payout = self._call(
            self._client.post,
            "/v1/payouts",
            body,
            headers={"X-Payout-Idempotency": key},
            retry=True,
        )
        status = PAYOUT_STATUSES.get(str(payout.get("status")))
        if status is None:
            raise ProviderRejected(
                "Razorpay answered a payout in an unknown status",
                provider_status=safe_code(payout.get("status")),
            )
        return ProviderPayout(
            payout_id=_required_str(payout, "id"),
            amount=optional_int(payout.get("amount")) or amount,
            currency=upper(payout.get("currency")) or currency,
            status=status,
            failure_reason=_payout_failure(payout) if status in ("failed", "reversed") else None,
        )

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
        reference=_reference(refund),
    )


def _reference(refund: Mapping[str, Any]) -> str | None:
    notes = refund.get("notes")
    return optional_str(notes.get(REFUND_REFERENCE_NOTE)) if isinstance(notes, dict) else None


def _translate(
    *,
    event_type: str,
    event_id: str,
    occurred_at: Any,
    payment: dict[str, Any],
    order: dict[str, Any],
    refund: dict[str, Any],
    payout: dict[str, Any],
    dispute: dict[str, Any],
    event: dict[str, Any],
) -> WebhookEvent:
    kind = EVENT_KINDS.get(event_type, EventKind.IGNORED)
    fields: dict[str, Any] = {}
    if event_type.startswith("payment.dispute."):
        if event_type == "payment.dispute.closed":
            deducted = optional_int(dispute.get("amount_deducted")) or 0
            kind = EventKind.DISPUTE_LOST if deducted else EventKind.DISPUTE_WON
        fields = {
            "payment_id": optional_str(dispute.get("payment_id"))
            or optional_str(payment.get("id")),
            "dispute_id": optional_str(dispute.get("id")),
            "amount": optional_int(dispute.get("amount")),
            "currency": upper(dispute.get("currency")),
            "failure_reason": optional_str(dispute.get("reason_code"))
            or optional_str(dispute.get("reason_description")),
        }
    elif event_type.startswith(("payment.", "order.")):
        if payment.get("invoice_id"):
            kind = EventKind.IGNORED  # a subscription cycle's payment: see razorpay_billing
        fields = {
            "provider_order_id": optional_str(payment.get("order_id"))
            or optional_str(order.get("id")),
            "payment_id": optional_str(payment.get("id")),
            "amount": optional_int(payment.get("amount")),
            "currency": upper(payment.get("currency")),
            "failure_reason": optional_str(payment.get("error_description"))
            or optional_str(payment.get("error_reason")),
        }
    elif event_type.startswith("refund."):
        fields = {
            "payment_id": optional_str(refund.get("payment_id")),
            "refund_id": optional_str(refund.get("id")),
            "amount": optional_int(refund.get("amount")),
            "currency": upper(refund.get("currency")),
            "reference": _reference(refund),
        }
    elif event_type.startswith("payout."):
        fields = {
            "payout_id": optional_str(payout.get("id")),
            "amount": optional_int(payout.get("amount")),
            "currency": upper(payout.get("currency")),
            "failure_reason": _payout_failure(payout),
            "reference": payout_reference(payout),
        }
    return WebhookEvent(
        provider=NAME,
        event_id=event_id,
        kind=kind,
        provider_type=event_type,
        occurred_at=from_unix(occurred_at),
        data=event,
        **fields,
    )


def _event_id(
    event_type: str, event: Mapping[str, Any], payload: Mapping[str, Any], body: bytes
) -> str:
    """The inbox's name for an event, from what the signature covers.

    Not `X-Razorpay-Event-Id`: the signature does not cover headers, so anyone replaying a
    signed body under a new header value would have it processed again. The event's own type,
    time and entity ids name it however Razorpay serialises a redelivery; a body without entity
    ids is named by its bytes.
    """
    ids = sorted(
        f"{name}={entity['id']}"
        for name, wrapper in payload.items()
        if isinstance(wrapper, dict)
        and isinstance(entity := wrapper.get("entity"), dict)
        and isinstance(entity.get("id"), str)
        and entity["id"]
    )
    if not ids:
        return "sha256:" + hashlib.sha256(body).hexdigest()
    created_at = event.get("created_at")
    named = "|".join([event_type, str(created_at if type(created_at) is int else ""), *ids])
    return "rzp:" + hashlib.sha256(named.encode("utf-8")).hexdigest()


def _entity(payload: dict[str, Any], name: str) -> dict[str, Any]:
    wrapper = payload.get(name)
    entity = wrapper.get("entity") if isinstance(wrapper, dict) else None
    return entity if isinstance(entity, dict) else {}


def _payout_failure(payout: Mapping[str, Any]) -> str | None:
    details = payout.get("status_details")
    described = details.get("description") if isinstance(details, dict) else None
    return optional_str(payout.get("failure_reason")) or optional_str(described)


def _fund_account(
    destination: Mapping[str, Any], *, reference_id: str
) -> tuple[dict[str, Any], str]:
    """RazorpayX's inline fund account for a destination, and the transfer mode it takes."""
    kind = destination.get("type")
    name = destination.get("name")
    contact = {
        "name": str(name or "Coffer user")[:50],
        "type": "customer",
        "reference_id": str(destination.get("contact_id") or reference_id)[:40],
    }
    if kind == "bank_account":
        missing = [f for f in ("name", "ifsc", "account_number") if not destination.get(f)]
        if missing:
            raise ProviderRejected(f"a bank account destination needs {', '.join(missing)}")
        mode = str(destination.get("mode") or "IMPS").upper()
        if mode not in ("IMPS", "NEFT", "RTGS"):
            raise ProviderRejected("a bank transfer's mode is IMPS, NEFT or RTGS")
        account = {
            "account_type": "bank_account",
            "bank_account": {
                "name": str(name)[:120],
                "ifsc": str(destination["ifsc"]).upper(),
                "account_number": str(destination["account_number"]),
            },
            "contact": contact,
        }
        return account, mode
    if kind == "vpa":
        address = destination.get("address")
        if not isinstance(address, str) or "@" not in address:
            raise ProviderRejected("a VPA destination needs an address like name@bank")
        return {"account_type": "vpa", "vpa": {"address": address}, "contact": contact}, "UPI"
    raise ProviderRejected("a payout destination's type is 'bank_account' or 'vpa'")


def _required_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ProviderUnavailable(f"Razorpay's answer has no {key}")
    return value


__all__ = ["EVENT_ID_HEADER", "EVENT_KINDS", "SIGNATURE_HEADER", "RazorpayProvider"]
