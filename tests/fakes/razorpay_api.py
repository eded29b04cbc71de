"""A stateful local fake of Razorpay's HTTP API (orders, payments, refunds, RazorpayX payouts;
RazorpayX contacts and fund accounts in `razorpayx_api.py`).

The official SDK talks to it over HTTP: `razorpay.Client(auth=..., base_url=fake.base_url)`.
It checks Basic auth, validates amounts like Razorpay (integers of paise, at least 100),
enforces `X-Refund-Idempotency` and `X-Payout-Idempotency`, and answers errors in Razorpay's
shape (`{"error": {"code": "BAD_REQUEST_ERROR", "description": ...}}`). Test-only helpers play
the customer and the bank (`pay_order`, `fail_order`, `capture_late`, `process_payout`, ...);
every state change records the event Razorpay would send, and `webhook(...)` signs one.
Money that leaves on Razorpay's side: `dashboard_refund`, `open_dispute` / `close_dispute`, and
with `refund_mode = "pending"` refunds answered pending, then `process_refund` / `fail_refund`.

    with running_razorpay_fake() as fake:
        provider = RazorpayProvider(**fake.provider_options())
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from coffer.providers import signatures
from tests.fakes._http import (
    FakeApi,
    HttpError,
    Request,
    Response,
    Webhook,
    random_id,
    route,
    serve,
)
from tests.fakes.razorpay_billing import RazorpayBillingFake
from tests.fakes.razorpayx_api import RazorpayXFake

CURRENCIES = {"INR", "USD", "EUR", "GBP", "SGD", "AED", "MYR"}
AMOUNT_MIN = 100  # Razorpay's minimum: one rupee
IFSC = re.compile(r"^[A-Z]{4}0[A-Z0-9]{6}$")
PAYOUT_KEY = re.compile(r"^[A-Za-z0-9 _-]{4,36}$")
REFUND_KEY = re.compile(r"^[A-Za-z0-9_-]{10,}$")


def bad_request(description: str, *, field: str | None = None, status: int = 400) -> HttpError:
    """Razorpay's error body; the SDK raises BadRequestError for its code."""
    error: dict[str, Any] = {
        "code": "BAD_REQUEST_ERROR",
        "description": description,
        "source": "business" if field else "NA",
        "step": "payment_initiation" if field else "NA",
        "reason": "input_validation_failed" if field else "NA",
        "metadata": {},
    }
    if field:
        error["field"] = field
    return HttpError(status, {"error": error})


class Paid(NamedTuple):
    """What Razorpay Checkout hands the client after paying an order."""

    payment_id: str
    signature: str


class RazorpayFake(RazorpayXFake, RazorpayBillingFake, FakeApi):
    key_id = "rzp_test_FakeKey000001"
    key_secret = "fake_rzp_key_secret_0001"
    webhook_secret = "fake_rzp_webhook_secret_0001"
    account_id = "acc_FakeAccount00001"
    payout_account_number = "7878780080316316"  # the business's RazorpayX account

    def __init__(self) -> None:
        super().__init__()
        self._init_razorpayx()
        self._billing_tables()  # plans and subscriptions: tests/fakes/razorpay_billing.py
        self.orders: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.payouts: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []  # (event id, event body)
        self.disputes: dict[str, dict[str, Any]] = {}
        self.payout_balance = 10_000_000_00  # paise available in the RazorpayX account
        self._idempotent: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        # "instant": refunds are processed as they are made; "pending": they are answered
        # pending and settle later through `process_refund` / `fail_refund` (Razorpay's normal
        # speed takes days).
        self.refund_mode = "instant"
        self._lose_responses = 0

    def lose_next_responses(self, count: int = 1) -> None:
        """Handle the next `count` requests but answer each 503, as if the answer got lost."""
        with self.lock:
            self._lose_responses += count

    def forget_idempotency_keys(self) -> None:
        """Razorpay keeps refund keys for a while only: after that a retry is a new request."""
        with self.lock:
            self._idempotent.clear()

    def handle(self, request: Request) -> Response:
        response = super().handle(request)
        with self.lock:
            if self._lose_responses:
                self._lose_responses -= 1
                return Response(503, self.server_error_body(503))
        return response

    def provider_options(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for `RazorpayProvider` pointed at this fake."""
        options = {
            "key_id": self.key_id,
            "key_secret": self.key_secret,
            "webhook_secret": self.webhook_secret,
            "api_base": self.base_url,
            "payout_account_number": self.payout_account_number,
        }
        return {**options, **overrides}

    def settings_values(self) -> dict[str, Any]:
        """`Settings(**fake.settings_values())` configures Coffer for this fake."""
        return {
            "razorpay_key_id": self.key_id,
            "razorpay_key_secret": self.key_secret,
            "razorpay_webhook_secret": self.webhook_secret,
            "razorpay_api_base": self.base_url,
            "razorpay_payout_account_number": self.payout_account_number,
        }

    # -- the HTTP API ----------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> None:
        expected = base64.b64encode(f"{self.key_id}:{self.key_secret}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            raise bad_request("Authentication failed", status=401)

    def server_error_body(self, status: int) -> Any:
        description = "The server encountered an error. The incident has been reported to admins"
        return {"error": {"code": "SERVER_ERROR", "description": description}}

    def not_found_body(self, request: Request) -> Any:
        return {
            "error": {
                "code": "BAD_REQUEST_ERROR",
                "description": "The requested URL was not found on the server.",
            }
        }

    @route("POST", r"/v1/orders")
    def create_order(self, request: Request) -> Response:
        data = request.json()
        amount = _amount(data.get("amount"))
        currency = data.get("currency", "INR")
        if currency not in CURRENCIES:
            raise bad_request("Currency is not supported", field="currency")
        receipt = data.get("receipt")
        if receipt is not None and len(str(receipt)) > 40:
            raise bad_request("receipt: the length must be no more than 40.", field="receipt")
        notes = data.get("notes") or {}
        if not isinstance(notes, dict) or len(notes) > 15:
            raise bad_request("notes: at most 15 key-value pairs", field="notes")
        order = {
            "id": random_id("order_"),
            "entity": "order",
            "amount": amount,
            "amount_paid": 0,
            "amount_due": amount,
            "currency": currency,
            "receipt": receipt,
            "offer_id": None,
            "status": "created",
            "attempts": 0,
            "notes": notes,
            "created_at": int(time.time()),
        }
        self.orders[order["id"]] = order
        return Response(200, order)

    @route("GET", r"/v1/orders/(?P<order_id>[^/]+)")
    def fetch_order(self, request: Request, order_id: str) -> Response:
        return Response(200, self._get(self.orders, order_id))

    @route("GET", r"/v1/payments/(?P<payment_id>[^/]+)")
    def fetch_payment(self, request: Request, payment_id: str) -> Response:
        return Response(200, self._get(self.payments, payment_id))

    @route("POST", r"/v1/payments/(?P<payment_id>[^/]+)/capture")
    def capture_payment(self, request: Request, payment_id: str) -> Response:
        payment = self._get(self.payments, payment_id)
        data = request.json()
        if payment["status"] == "captured":
            raise bad_request("This payment has already been captured")
        if payment["status"] != "authorized":
            raise bad_request(
                "Only payments which have been authorized and not yet captured can be captured"
            )
        if data.get("amount") != payment["amount"]:
            raise bad_request(
                "Capture amount must be equal to the amount authorized", field="amount"
            )
        if data.get("currency", payment["currency"]) != payment["currency"]:
            raise bad_request("Currency should be same as the payment currency", field="currency")
        self._capture(payment)
        return Response(200, payment)

    @route("POST", r"/v1/payments/(?P<payment_id>[^/]+)/refund")
    def refund_payment(self, request: Request, payment_id: str) -> Response:
        key = request.headers.get("x-refund-idempotency")
        if key is not None and not REFUND_KEY.match(key):
            raise bad_request(
                "X-Refund-Idempotency must be at least 10 characters of letters, digits, _ and -"
            )
        return self._idempotently(
            "refund", key, request, lambda: self._refund(payment_id, request.json())
        )

    @route("GET", r"/v1/payments/(?P<payment_id>[^/]+)/refunds")
    def fetch_payment_refunds(self, request: Request, payment_id: str) -> Response:
        self._get(self.payments, payment_id)
        count = int(request.query.get("count", "10"))
        found = [r for r in self.refunds.values() if r["payment_id"] == payment_id]
        found.sort(key=lambda r: r["created_at"], reverse=True)
        return Response(
            200, {"entity": "collection", "count": len(found[:count]), "items": found[:count]}
        )

    @route("GET", r"/v1/refunds/(?P<refund_id>[^/]+)")
    def fetch_refund(self, request: Request, refund_id: str) -> Response:
        return Response(200, self._get(self.refunds, refund_id))

    @route("POST", r"/v1/payouts")
    def create_payout(self, request: Request) -> Response:
        key = request.headers.get("x-payout-idempotency")
        if key is None:
            raise bad_request("The X-Payout-Idempotency header is required")
        if not PAYOUT_KEY.match(key):
            raise bad_request("X-Payout-Idempotency must be 4-36 letters, digits, spaces, _ or -")
        return self._idempotently("payout", key, request, lambda: self._payout(request.json()))

    @route("GET", r"/v1/payouts/(?P<payout_id>[^/]+)")
    def fetch_payout(self, request: Request, payout_id: str) -> Response:
        return Response(200, self._get(self.payouts, payout_id))

    # -- test-only helpers: the customer, the bank and the webhooks --------------------------------------

    def pay_order(self, order_id: str, *, capture: bool = True, method: str = "upi") -> Paid:
        """The customer pays `order_id` in Checkout; captured at once unless `capture=False`."""
        with self.lock:
            order = self._get(self.orders, order_id)
            payment = self._new_payment(order, method=method)
            payment["status"] = "authorized"
            self._emit("payment.authorized", payment=payment)
            if capture:
                self._capture(payment)
            return Paid(payment["id"], self.checkout_signature(order_id, payment["id"]))

    def fail_order(
        self,
        order_id: str,
        *,
        description: str = "Payment failed because the card was declined",
        reason: str = "payment_failed",
    ) -> str:
        """The customer's attempt at `order_id` fails; returns the failed payment's id."""
        with self.lock:
            order = self._get(self.orders, order_id)
            payment = self._new_payment(order, method="card")
            payment.update(
                status="failed",
                error_code="BAD_REQUEST_ERROR",
                error_description=description,
                error_source="customer",
                error_step="payment_authorization",
                error_reason=reason,
            )
            self._emit("payment.failed", payment=payment)
            return str(payment["id"])

    def capture_late(self, payment_id: str) -> None:
        """A payment reported failed is authorised late and captured (Razorpay does this)."""
        with self.lock:
            payment = self._get(self.payments, payment_id)
            assert payment["status"] == "failed"
            for key in (
                "error_code",
                "error_description",
                "error_source",
                "error_step",
                "error_reason",
            ):
                payment[key] = None
            self._capture(payment)

    def dashboard_refund(self, payment_id: str, amount: int | None = None) -> dict[str, Any]:
        """Someone refunds in Razorpay's dashboard (no Coffer notes); returns the refund."""
        with self.lock:
            payment = self._get(self.payments, payment_id)
            left = payment["amount"] - payment["amount_refunded"]
            return self._refund(payment_id, {"amount": left if amount is None else amount})

    def process_refund(self, refund_id: str) -> None:
        """The bank finishes a pending refund: `refund.processed`."""
        with self.lock:
            refund = self._get(self.refunds, refund_id)
            assert refund["status"] == "pending"
            refund["status"] = "processed"
            self._emit(
                "refund.processed", refund=refund, payment=self.payments[refund["payment_id"]]
            )

    def open_dispute(self, payment_id: str, *, amount: int | None = None) -> str:
        """The customer's bank raises a chargeback: `payment.dispute.created`; returns its id."""
        with self.lock:
            payment = self._get(self.payments, payment_id)
            dispute = {
                "id": random_id("disp_"),
                "entity": "dispute",
                "payment_id": payment_id,
                "amount": payment["amount"] if amount is None else amount,
                "currency": payment["currency"],
                "amount_deducted": 0,
                "reason_code": "chargeback",
                "reason_description": "The customer disputed the payment with their bank",
                "respond_by": int(time.time()) + 7 * 86_400,
                "status": "open",
                "phase": "chargeback",
                "created_at": int(time.time()),
            }
            self.disputes[dispute["id"]] = dispute
            self._emit("payment.dispute.created", payment=payment, dispute=dispute)
            return str(dispute["id"])

    def close_dispute(self, dispute_id: str, *, won: bool, event: str | None = None) -> None:
        """Decided: `payment.dispute.won` or `.lost` (or `event`, e.g. `payment.dispute.closed`)."""
        with self.lock:
            dispute = self._get(self.disputes, dispute_id)
            dispute["status"] = "won" if won else "lost"
            dispute["amount_deducted"] = 0 if won else dispute["amount"]
            name = event or ("payment.dispute.won" if won else "payment.dispute.lost")
            self._emit(name, payment=self.payments[dispute["payment_id"]], dispute=dispute)

    def fail_refund(self, refund_id: str) -> None:
        with self.lock:
            refund = self._get(self.refunds, refund_id)
            payment = self.payments[refund["payment_id"]]
            refund["status"] = "failed"
            payment["amount_refunded"] -= refund["amount"]
            payment["refund_status"] = "partial" if payment["amount_refunded"] else None
            payment["status"] = "captured"
            self._emit("refund.failed", refund=refund, payment=payment)

    def process_payout(self, payout_id: str, *, utr: str = "FAKEUTR000000001") -> None:
        with self.lock:
            payout = self._get(self.payouts, payout_id)
            payout.update(status="processed", utr=utr)
            self._emit("payout.processed", payout=payout)

    def fail_payout(self, payout_id: str, *, reason: str = "Beneficiary bank is offline") -> None:
        with self.lock:
            payout = self._get(self.payouts, payout_id)
            payout.update(status="failed", failure_reason=reason)
            payout["status_details"] = {
                "reason": "bank_offline",
                "description": reason,
                "source": "beneficiary_bank",
            }
            self.payout_balance += payout["amount"]
            self._emit("payout.failed", payout=payout)

    def reverse_payout(
        self, payout_id: str, *, reason: str = "Beneficiary account is closed"
    ) -> None:
        with self.lock:
            payout = self._get(self.payouts, payout_id)
            assert payout["status"] == "processed"
            payout.update(status="reversed", failure_reason=reason)
            self.payout_balance += payout["amount"]
            self._emit("payout.reversed", payout=payout)

    def checkout_signature(self, order_id: str, payment_id: str) -> str:
        return signatures.hmac_sha256_hex(self.key_secret, f"{order_id}|{payment_id}".encode())

    def webhook(self, name: str | None = None, *, secret: str | None = None) -> Webhook:
        """The last recorded event (named `name`, if given), signed as Razorpay sends it."""
        with self.lock:
            found = [(i, e) for i, e in self.events if name is None or e["event"] == name]
        assert found, f"no {name or ''} event was recorded"
        event_id, event = found[-1]
        return self.sign(event, event_id=event_id, secret=secret)

    def sign(
        self, event: dict[str, Any], *, event_id: str | None = None, secret: str | None = None
    ) -> Webhook:
        body = json.dumps(event, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "X-Razorpay-Signature": signatures.hmac_sha256_hex(secret or self.webhook_secret, body),
            "X-Razorpay-Event-Id": event_id or random_id("evt_"),
        }
        return Webhook(body, headers, event)

    # -- internals ---------------------------------------------------------------------------------------

    def _get(self, table: dict[str, dict[str, Any]], object_id: str) -> dict[str, Any]:
        found = table.get(object_id)
        if found is None:
            raise bad_request("The id provided does not exist")
        return found

    def _new_payment(self, order: dict[str, Any], *, method: str) -> dict[str, Any]:
        order["attempts"] += 1
        order["status"] = "attempted"
        payment = {
            "id": random_id("pay_"),
            "entity": "payment",
            "amount": order["amount"],
            "currency": order["currency"],
            "status": "created",
            "order_id": order["id"],
            "method": method,
            "amount_refunded": 0,
            "refund_status": None,
            "captured": False,
            "description": None,
            "email": "customer@example.com",
            "contact": "+919000090000",
            "notes": order["notes"],
            "fee": None,
            "tax": None,
            "error_code": None,
            "error_description": None,
            "error_source": None,
            "error_step": None,
            "error_reason": None,
            "created_at": int(time.time()),
        }
        self.payments[payment["id"]] = payment
        return payment

    def _capture(self, payment: dict[str, Any]) -> None:
        order = self.orders[payment["order_id"]]
        fee = payment["amount"] * 2 // 100  # Razorpay's 2 %, for realistic-looking payloads
        payment.update(status="captured", captured=True, fee=fee, tax=fee * 18 // 100)
        order.update(status="paid", amount_paid=payment["amount"], amount_due=0)
        self._emit("payment.captured", payment=payment)
        self._emit("order.paid", payment=payment, order=order)

    def _refund(self, payment_id: str, data: dict[str, Any]) -> dict[str, Any]:
        payment = self._get(self.payments, payment_id)
        if payment["status"] not in ("captured", "refunded"):
            raise bad_request("The payment has not been captured, so it cannot be refunded")
        remaining = payment["amount"] - payment["amount_refunded"]
        if remaining == 0:
            raise bad_request("The payment has been fully refunded already")
        amount = _amount(data.get("amount", remaining))
        if amount > remaining:
            raise bad_request(
                "The refund amount provided is greater than amount captured", field="amount"
            )
        refund = {
            "id": random_id("rfnd_"),
            "entity": "refund",
            "amount": amount,
            "currency": payment["currency"],
            "payment_id": payment_id,
            "notes": data.get("notes") or {},
            "receipt": data.get("receipt"),
            "acquirer_data": {"rrn": None},
            "status": "pending" if self.refund_mode == "pending" else "processed",
            "speed_requested": data.get("speed", "normal"),
            "speed_processed": "normal",
            "created_at": int(time.time()),
        }
        self.refunds[refund["id"]] = refund
        payment["amount_refunded"] += amount
        full = payment["amount_refunded"] == payment["amount"]
        payment.update(
            refund_status="full" if full else "partial", status="refunded" if full else "captured"
        )
        self._emit("refund.created", refund=refund, payment=payment)
        if refund["status"] == "processed":
            self._emit("refund.processed", refund=refund, payment=payment)
        return refund

    def _payout(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("account_number") != self.payout_account_number:
            raise bad_request("The account number is invalid", field="account_number")
        amount = _amount(data.get("amount"))
        if data.get("currency") != "INR":
            raise bad_request("Currency should be INR", field="currency")
        fund_account = self.resolve_fund_account(data)
        if not isinstance(fund_account, dict):
            raise bad_request("The fund account field is required", field="fund_account")
        mode = data.get("mode")
        kind = fund_account.get("account_type")
        if kind == "bank_account":
            bank = fund_account.get("bank_account") or {}
            if not IFSC.match(str(bank.get("ifsc", ""))):
                raise bad_request("Invalid IFSC Code in Bank Account", field="ifsc")
            if not re.fullmatch(r"[A-Za-z0-9]{5,35}", str(bank.get("account_number", ""))):
                raise bad_request("The account number is invalid", field="account_number")
            if not bank.get("name"):
                raise bad_request("The name field is required", field="name")
            if mode not in ("IMPS", "NEFT", "RTGS"):
                raise bad_request("Invalid mode for a bank account", field="mode")
        elif kind == "vpa":
            if "@" not in str((fund_account.get("vpa") or {}).get("address", "")):
                raise bad_request(
                    "Invalid VPA. Please enter a valid Virtual Payment Address", field="address"
                )
            if mode != "UPI":
                raise bad_request("Invalid mode for a VPA", field="mode")
        else:
            raise bad_request("Invalid account type", field="account_type")
        if not data.get("purpose"):
            raise bad_request("The purpose field is required", field="purpose")
        queued = amount > self.payout_balance
        if queued and not data.get("queue_if_low_balance"):
            raise bad_request(
                "Your account does not have enough balance to carry out the payout operation."
            )
        if not queued:
            self.payout_balance -= amount
        payout = {
            "id": random_id("pout_"),
            "entity": "payout",
            "fund_account_id": data.get("fund_account_id") or random_id("fa_"),
            "fund_account": {
                **fund_account,
                "id": data.get("fund_account_id") or random_id("fa_"),
                "entity": "fund_account",
                "active": True,
            },
            "amount": amount,
            "currency": "INR",
            "notes": data.get("notes") or {},
            "fees": 590,
            "tax": 90,
            "status": "queued" if queued else "processing",
            "purpose": data["purpose"],
            "utr": None,
            "mode": mode,
            "reference_id": data.get("reference_id"),
            "narration": data.get("narration"),
            "batch_id": None,
            "failure_reason": None,
            "status_details": None,
            "created_at": int(time.time()),
        }
        self.payouts[payout["id"]] = payout
        self._emit("payout.queued" if queued else "payout.initiated", payout=payout)
        return payout

    def _idempotently(self, scope: str, key: str | None, request: Request, create: Any) -> Response:
        """Same key and body: the first answer again. Same key, other body: a 400."""
        if key is None:
            return Response(200, create())
        fingerprint = hashlib.sha256(request.path.encode() + b"|" + request.body).hexdigest()
        seen = self._idempotent.get((scope, key))
        if seen is not None:
            if seen[0] != fingerprint:
                raise bad_request(
                    "Different request with the same idempotency key has already been processed."
                )
            return Response(200, seen[1])
        answer = create()
        self._idempotent[(scope, key)] = (fingerprint, answer)
        return Response(200, answer)

    def _emit(self, name: str, **entities: dict[str, Any]) -> None:
        event = {
            "entity": "event",
            "account_id": self.account_id,
            "event": name,
            "contains": list(entities),
            "payload": {
                kind: {"entity": json.loads(json.dumps(obj))} for kind, obj in entities.items()
            },
            "created_at": int(time.time()),
        }
        self.events.append((random_id("evt_"), event))


def _amount(value: Any) -> int:
    if type(value) is not int:
        raise bad_request("The amount must be an integer.", field="amount")
    if value < AMOUNT_MIN:
        raise bad_request("The amount must be atleast INR 1.00", field="amount")
    return value


@contextmanager
def running_razorpay_fake() -> Iterator[RazorpayFake]:
    """A Razorpay fake served on a loopback port for the duration (`fake.base_url`)."""
    fake = RazorpayFake()
    with serve(fake):
        yield fake
