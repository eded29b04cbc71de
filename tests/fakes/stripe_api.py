"""A stateful local fake of Stripe's HTTP API (PaymentIntents, refunds, payouts; Connect
accounts, account links and transfers in `stripe_connect_api.py`).

The official SDK talks to it over HTTP: `StripeClient(key, base_addresses={"api": fake.base_url})`.
It checks the Bearer key, reads Stripe's form encoding, validates amounts (integers, at least
50), replays `Idempotency-Key`s (same key and parameters: the first answer, with
`Idempotent-Replayed: true`; other parameters: a 400 `idempotency_error`), and answers errors in
Stripe's shape (`{"error": {"type", "code", "message", "param"}}`) and statuses. Test-only helpers
play the customer and the bank (`succeed_payment`, `fail_payment`, `pay_out`, ...); every state
change records the event Stripe would send, and `webhook(...)` signs one (`Stripe-Signature`).
Money that leaves on Stripe's side: `dashboard_refund`, `open_dispute` / `close_dispute`, and
with `refund_mode = "pending"` refunds answered pending then settled by `settle_refund` (which
can also fail one that had succeeded). `lose_next_responses` and `forget_idempotency_keys` play
an answer lost on the way back and Stripe's 24-hour key window.

    with running_stripe_fake() as fake:
        provider = StripeProvider(**fake.provider_options())
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
from tests.fakes.stripe_billing import StripeBillingFake
from tests.fakes.stripe_connect_api import StripeConnectFake

API_VERSION = "2026-10-28.endive"
AMOUNT_MIN = 50  # Stripe's minimum charge is about 50 cents in most currencies
CURRENCIES = {"usd", "eur", "gbp", "inr", "jpy", "cad", "aud", "sgd"}


def stripe_error(
    message: str,
    *,
    status: int = 400,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> HttpError:
    error: dict[str, Any] = {"type": type, "message": message}
    if code:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        error["param"] = param
    return HttpError(status, {"error": error})


class StripeFake(StripeConnectFake, StripeBillingFake, FakeApi):
    api_key = "sk_test_FakeStripeKey0001"
    publishable_key = "pk_test_FakeStripeKey0001"
    webhook_secret = "whsec_FakeStripeSecret0001"

    def __init__(self) -> None:
        super().__init__()
        self._init_connect()
        self._billing_tables()  # customers, prices, subscriptions: tests/fakes/stripe_billing.py
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.payouts: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.disputes: dict[str, dict[str, Any]] = {}
        self.balance: dict[str, int] = {}  # available per currency, from succeeded payments
        self._idempotent: dict[str, tuple[str, Response]] = {}
        self._key_locks: dict[str, threading.Lock] = {}
        # "instant": refunds succeed as they are made; "pending": they are answered pending and
        # settle later through `settle_refund` (Stripe does both, by payment method).
        self.refund_mode = "instant"
        self._lose_responses = 0

    def provider_options(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for `StripeProvider` pointed at this fake."""
        options = {
            "api_key": self.api_key,
            "publishable_key": self.publishable_key,
            "webhook_secret": self.webhook_secret,
            "api_base": self.base_url,
        }
        return {**options, **overrides}

    def settings_values(self) -> dict[str, Any]:
        """`Settings(**fake.settings_values())` configures Coffer for this fake."""
        return {
            "stripe_api_key": self.api_key,
            "stripe_publishable_key": self.publishable_key,
            "stripe_webhook_secret": self.webhook_secret,
            "stripe_api_base": self.base_url,
        }

    # -- the HTTP API ----------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> None:
        given = request.headers.get("authorization", "")
        if not given.startswith("Bearer ") or not given[7:]:
            raise stripe_error(
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth.",
                status=401,
            )
        if given[7:] != self.api_key:
            raise stripe_error(
                f"Invalid API Key provided: {given[7:15]}****{given[-4:]}", status=401
            )

    def server_error_body(self, status: int) -> Any:
        return {"error": {"type": "api_error", "message": "An unknown error occurred"}}

    def not_found_body(self, request: Request) -> Any:
        return {
            "error": {
                "type": "invalid_request_error",
                "message": f"Unrecognized request URL ({request.method}: {request.path}).",
            }
        }

    def lose_next_responses(self, count: int = 1) -> None:
        """Handle the next `count` requests but answer each 503, as if the answer got lost on
        the way back (the refund or payment is made all the same)."""
        with self.lock:
            self._lose_responses += count

    def forget_idempotency_keys(self) -> None:
        """Stripe keeps keys for 24 hours: after that a retry is a new request."""
        with self.lock:
            self._idempotent.clear()

    def handle(self, request: Request) -> Response:
        response = self._handle_idempotently(request)
        with self.lock:
            if self._lose_responses:
                self._lose_responses -= 1
                return Response(503, self.server_error_body(503))
        return response

    def _handle_idempotently(self, request: Request) -> Response:
        # Idempotency wraps the whole API, as at Stripe: a POST with a key seen before replays.
        key = request.headers.get("idempotency-key")
        if request.method != "POST" or not key:
            return super().handle(request)
        fingerprint = hashlib.sha256(f"{request.path}|".encode() + _canonical(request)).hexdigest()
        # Stripe answers a request whose key is still in flight 409 and the SDK retries it; the
        # fake makes such copies wait their turn instead, which is what the retry achieves.
        with self.lock:
            in_flight = self._key_locks.setdefault(key, threading.Lock())
        with in_flight:
            return self._handle_keyed(request, key, fingerprint)

    def _handle_keyed(self, request: Request, key: str, fingerprint: str) -> Response:
        with self.lock:
            seen = self._idempotent.get(key)
        if seen is not None:
            if seen[0] != fingerprint:
                return Response(
                    400,
                    {
                        "error": {
                            "type": "idempotency_error",
                            "message": (
                                "Keys for idempotent requests can only be used with the same parameters they "
                                f"were first used with. Try using a key other than '{key}' if you meant to "
                                "execute a different request."
                            ),
                        }
                    },
                )
            return Response(seen[1].status, seen[1].body, {"Idempotent-Replayed": "true"})
        response = super().handle(request)
        # Stripe saves results once an endpoint has run, not 5xx or faults before it.
        if response.status < 500 and response.status != 401:
            with self.lock:
                self._idempotent.setdefault(key, (fingerprint, response))
        return response

    @route("POST", r"/v1/payment_intents")
    def create_payment_intent(self, request: Request) -> Response:
        data = request.form()
        amount = _amount(data.get("amount"))
        currency = _currency(data.get("currency"))
        intent_id = random_id("pi_3", 23)
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "automatic_payment_methods": {
                "enabled": data.get("automatic_payment_methods", {}).get("enabled") == "true"
            },
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic",
            "client_secret": f"{intent_id}_secret_{random_id('', 25)}",
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "currency": currency,
            "customer": data.get("customer"),
            "description": data.get("description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": _metadata(data.get("metadata")),
            "payment_method": None,
            "payment_method_types": ["card"],
            "status": "requires_payment_method",
        }
        self.payment_intents[intent_id] = intent
        return Response(200, intent)

    @route("GET", r"/v1/payment_intents/(?P<intent_id>[^/]+)")
    def retrieve_payment_intent(self, request: Request, intent_id: str) -> Response:
        intent = self._get(self.payment_intents, intent_id, "payment_intent", "intent")
        expand = {v for k, v in request.query.items() if k.startswith("expand[")}
        if "latest_charge" in expand and intent["latest_charge"]:
            intent = {
                **intent,
                "latest_charge": copy.deepcopy(self.charges[intent["latest_charge"]]),
            }
        return Response(200, intent)

    @route("GET", r"/v1/refunds")
    def list_refunds(self, request: Request) -> Response:
        intent_id = request.query.get("payment_intent")
        limit = int(request.query.get("limit", "10"))
        found = [
            r
            for r in self.refunds.values()
            if intent_id is None or r["payment_intent"] == intent_id
        ]
        found.sort(key=lambda r: r["created"], reverse=True)
        return Response(
            200,
            {
                "object": "list",
                "data": found[:limit],
                "has_more": len(found) > limit,
                "url": "/v1/refunds",
            },
        )

    @route("GET", r"/v1/refunds/(?P<refund_id>[^/]+)")
    def retrieve_refund(self, request: Request, refund_id: str) -> Response:
        return Response(200, self._get(self.refunds, refund_id, "refund", "refund"))

    @route("POST", r"/v1/refunds")
    def create_refund(self, request: Request) -> Response:
        data = request.form()
        intent_id = data.get("payment_intent")
        if not intent_id:
            raise stripe_error(
                "One of the following params should be provided for this request: payment_intent or charge."
            )
        intent = self._get(self.payment_intents, intent_id, "payment_intent", "payment_intent")
        charge = self.charges.get(intent["latest_charge"] or "")
        if intent["status"] != "succeeded" or charge is None:
            raise stripe_error(
                f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                param="payment_intent",
            )
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining == 0:
            raise stripe_error(
                f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
            )
        amount = _amount(data.get("amount", str(remaining)), minimum=1)
        if amount > remaining:
            raise stripe_error(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                code="amount_too_large",
                param="amount",
            )
        reason = data.get("reason")
        if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
            raise stripe_error(f"Invalid reason: {reason}", param="reason")
        refund = self._make_refund(charge, amount, reason=reason, metadata=data.get("metadata"))
        return Response(200, refund)

    def _make_refund(
        self, charge: dict[str, Any], amount: int, *, reason: str | None, metadata: Any
    ) -> dict[str, Any]:
        intent_id = charge["payment_intent"]
        pending = self.refund_mode == "pending"
        refund = {
            "id": random_id("re_3", 23),
            "object": "refund",
            "amount": amount,
            "balance_transaction": random_id("txn_3", 23),
            "charge": charge["id"],
            "created": int(time.time()),
            "currency": charge["currency"],
            "failure_reason": None,
            "metadata": _metadata(metadata),
            "payment_intent": intent_id,
            "reason": reason,
            "status": "pending" if pending else "succeeded",
        }
        self.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        charge["refunds"]["data"].insert(0, refund)
        charge["refunds"]["total_count"] += 1
        self.balance[charge["currency"]] -= amount
        self._emit("refund.created", refund)
        # Stripe sends charge.refunded when a refund is made, pending or not: its refunds list
        # says how each stands.
        self._emit("charge.refunded", charge)
        return refund

    @route("POST", r"/v1/payouts")
    def create_payout(self, request: Request) -> Response:
        data = request.form()
        amount = _amount(data.get("amount"), minimum=1)
        currency = _currency(data.get("currency"))
        if amount > self.balance.get(currency, 0):
            raise stripe_error(
                "You have insufficient funds in your Stripe account for this transfer. Your card "
                "balance is too low. You can use the /v1/balance endpoint to view your Stripe balance.",
                code="balance_insufficient",
            )
        self.balance[currency] -= amount
        payout = {
            "id": random_id("po_1", 23),
            "object": "payout",
            "amount": amount,
            "arrival_date": int(time.time()) + 2 * 86_400,
            "automatic": False,
            "created": int(time.time()),
            "currency": currency,
            "description": data.get("description"),
            "destination": data.get("destination") or "ba_1FakeDefaultBankAcct",
            "failure_code": None,
            "failure_message": None,
            "metadata": _metadata(data.get("metadata")),
            "method": data.get("method", "standard"),
            "status": "pending",
            "stripe_account": request.headers.get("stripe-account"),
            "type": "bank_account",
        }
        self.payouts[payout["id"]] = payout
        self._emit("payout.created", payout)
        return Response(200, payout)

    # -- test-only helpers: the customer, the bank and the webhooks --------------------------------------

    def succeed_payment(self, intent_id: str) -> Webhook:
        """The customer pays: the PaymentIntent succeeds with a charge; its webhook is returned."""
        with self.lock:
            intent = self._get(self.payment_intents, intent_id, "payment_intent", "intent")
            charge = {
                "id": random_id("ch_3", 23),
                "object": "charge",
                "amount": intent["amount"],
                "amount_refunded": 0,
                "currency": intent["currency"],
                "paid": True,
                "payment_intent": intent_id,
                "refunded": False,
                "refunds": {"object": "list", "data": [], "has_more": False, "total_count": 0},
                "status": "succeeded",
            }
            self.charges[charge["id"]] = charge
            intent.update(
                status="succeeded",
                amount_received=intent["amount"],
                latest_charge=charge["id"],
                last_payment_error=None,
                payment_method=random_id("pm_1", 23),
            )
            self.balance[intent["currency"]] = (
                self.balance.get(intent["currency"], 0) + intent["amount"]
            )
            return self._emit("payment_intent.succeeded", intent)

    def fail_payment(
        self,
        intent_id: str,
        *,
        code: str = "card_declined",
        message: str = "Your card was declined.",
    ) -> Webhook:
        with self.lock:
            intent = self._get(self.payment_intents, intent_id, "payment_intent", "intent")
            intent.update(
                status="requires_payment_method",
                last_payment_error={
                    "type": "card_error",
                    "code": code,
                    "decline_code": "generic_decline",
                    "message": message,
                },
            )
            return self._emit("payment_intent.payment_failed", intent)

    def process_payment(self, intent_id: str) -> Webhook:
        with self.lock:
            intent = self._get(self.payment_intents, intent_id, "payment_intent", "intent")
            intent["status"] = "processing"
            return self._emit("payment_intent.processing", intent)

    def cancel_payment(self, intent_id: str, *, reason: str = "abandoned") -> Webhook:
        with self.lock:
            intent = self._get(self.payment_intents, intent_id, "payment_intent", "intent")
            assert intent["status"] != "succeeded"
            intent.update(
                status="canceled", cancellation_reason=reason, canceled_at=int(time.time())
            )
            return self._emit("payment_intent.canceled", intent)

    def pay_out(self, payout_id: str) -> Webhook:
        """The bank receives the payout."""
        with self.lock:
            payout = self._get(self.payouts, payout_id, "payout", "payout")
            payout["status"] = "paid"
            return self._emit("payout.paid", payout)

    def fail_payout(
        self,
        payout_id: str,
        *,
        code: str = "account_closed",
        message: str = "The bank account has been closed.",
    ) -> Webhook:
        with self.lock:
            payout = self._get(self.payouts, payout_id, "payout", "payout")
            payout.update(status="failed", failure_code=code, failure_message=message)
            self.balance[payout["currency"]] += payout["amount"]
            return self._emit("payout.failed", payout)

    def dashboard_refund(self, intent_id: str, amount: int | None = None) -> dict[str, Any]:
        """Someone refunds in Stripe's dashboard (no Coffer metadata); returns the refund."""
        with self.lock:
            intent = self._get(self.payment_intents, intent_id, "payment_intent", "intent")
            charge = self.charges[intent["latest_charge"]]
            left = charge["amount"] - charge["amount_refunded"]
            return self._make_refund(
                charge, left if amount is None else amount, reason="requested_by_customer",
                metadata=None,
            )  # fmt: skip

    def settle_refund(self, refund_id: str, *, succeed: bool = True) -> Webhook:
        """The bank finishes a pending refund, or fails one (even one that had succeeded: Stripe
        sends `refund.failed` then); returns the `refund.updated` webhook."""
        with self.lock:
            refund = self._get(self.refunds, refund_id, "refund", "refund")
            if succeed:
                assert refund["status"] == "pending"
                refund["status"] = "succeeded"
                return self._emit("refund.updated", refund)
            assert refund["status"] in ("pending", "succeeded")
            charge = self.charges[refund["charge"]]
            refund.update(status="failed", failure_reason="expired_or_canceled_card")
            charge["amount_refunded"] -= refund["amount"]
            charge["refunded"] = False
            self.balance[charge["currency"]] += refund["amount"]
            updated = self._emit("refund.updated", refund)
            self._emit("refund.failed", refund)
            return updated

    def open_dispute(
        self, intent_id: str, *, amount: int | None = None, reason: str = "fraudulent"
    ) -> Webhook:
        """The cardholder disputes the charge: Stripe takes the amount; `charge.dispute.created`."""
        with self.lock:
            intent = self._get(self.payment_intents, intent_id, "payment_intent", "intent")
            charge = self.charges[intent["latest_charge"]]
            dispute = {
                "id": random_id("dp_1", 23),
                "object": "dispute",
                "amount": charge["amount"] if amount is None else amount,
                "charge": charge["id"],
                "created": int(time.time()),
                "currency": charge["currency"],
                "is_charge_refundable": False,
                "livemode": False,
                "metadata": {},
                "payment_intent": intent_id,
                "reason": reason,
                "status": "needs_response",
            }
            self.disputes[dispute["id"]] = dispute
            charge["disputed"] = True
            self.balance[charge["currency"]] -= dispute["amount"]
            return self._emit("charge.dispute.created", dispute)

    def close_dispute(self, dispute_id: str, *, won: bool) -> Webhook:
        """The card network decides; `charge.dispute.closed` (won gives the money back)."""
        with self.lock:
            dispute = self._get(self.disputes, dispute_id, "dispute", "dispute")
            assert dispute["status"] not in ("won", "lost")
            dispute["status"] = "won" if won else "lost"
            if won:
                self.balance[dispute["currency"]] += dispute["amount"]
            return self._emit("charge.dispute.closed", dispute)

    def webhook(self, event_type: str | None = None, **options: Any) -> Webhook:
        """The last recorded event (of `event_type`, if given), signed; see `sign`."""
        with self.lock:
            found = [e for e in self.events if event_type is None or e["type"] == event_type]
        assert found, f"no {event_type or ''} event was recorded"
        return self.sign(found[-1], **options)

    def sign(
        self,
        event: dict[str, Any],
        *,
        timestamp: int | None = None,
        secrets: list[str] | None = None,
    ) -> Webhook:
        """`event` as Stripe delivers it: pretty-printed JSON and `Stripe-Signature` at `timestamp`."""
        body = json.dumps(event, indent=2).encode("utf-8")
        header = signatures.sign_stripe(
            body,
            secrets=secrets or [self.webhook_secret],
            timestamp=int(time.time()) if timestamp is None else timestamp,
        )
        return Webhook(
            body, {"Content-Type": "application/json", "Stripe-Signature": header}, event
        )

    # -- internals ---------------------------------------------------------------------------------------

    def _get(
        self, table: dict[str, dict[str, Any]], object_id: str, kind: str, param: str
    ) -> dict[str, Any]:
        found = table.get(object_id)
        if found is None:
            raise stripe_error(
                f"No such {kind}: '{object_id}'", status=404, code="resource_missing", param=param
            )
        return found

    def _emit(self, event_type: str, obj: dict[str, Any]) -> Webhook:
        event = {
            "id": random_id("evt_1", 23),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": copy.deepcopy(obj)},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": random_id("req_", 14), "idempotency_key": None},
            "type": event_type,
        }
        self.events.append(event)
        return self.sign(event)


def _canonical(request: Request) -> bytes:
    return json.dumps(request.form(), sort_keys=True).encode("utf-8")


def _amount(value: Any, *, minimum: int = AMOUNT_MIN) -> int:
    if value is None:
        raise stripe_error(
            "Missing required param: amount.", code="parameter_missing", param="amount"
        )
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,15}", value):
        raise stripe_error(
            f"Invalid integer: {value}", code="parameter_invalid_integer", param="amount"
        )
    amount = int(value)
    if amount < minimum:
        raise stripe_error(
            "Amount must be at least $0.50 usd", code="amount_too_small", param="amount"
        )
    return amount


def _currency(value: Any) -> str:
    if value is None:
        raise stripe_error(
            "Missing required param: currency.", code="parameter_missing", param="currency"
        )
    if value not in CURRENCIES:
        raise stripe_error(
            f"Invalid currency: {value}. Stripe currently supports these currencies: {', '.join(sorted(CURRENCIES))}",
            code="parameter_invalid_string",
            param="currency",
        )
    return str(value)


def _metadata(value: Any) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict) or len(value) > 50:
        raise stripe_error("Invalid metadata: at most 50 keys", param="metadata")
    return {str(k): str(v) for k, v in value.items()}


@contextmanager
def running_stripe_fake() -> Iterator[StripeFake]:
    """A Stripe fake served on a loopback port for the duration (`fake.base_url`)."""
    fake = StripeFake()
    with serve(fake):
        yield fake
