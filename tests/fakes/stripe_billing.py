"""Stripe Billing in the fake (a mixin of `StripeFake`): `POST /v1/customers`, `POST /v1/prices`
(with `product_data`), `POST /v1/subscriptions` (`payment_behavior=default_incomplete`, the
first invoice open with a PaymentIntent, `expand[]=latest_invoice.payment_intent`),
`GET /v1/subscriptions/{id}`, `POST /v1/subscriptions/{id}` (`cancel_at_period_end`), and
test helpers that play the customer and the bank:

    webhook = fake.pay_invoice(sub_id)    # the open invoice (or the next period's) paid: `invoice.paid`
    webhook = fake.fail_invoice(sub_id)   # the next period's charge fails: `invoice.payment_failed`
    webhook = fake.end_subscription(sub_id)  # `customer.subscription.deleted`

Invoices name their subscription the way newer API versions do
(`parent.subscription_details.subscription`), and each has one line whose `period` is the
period it bills.
"""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from typing import Any

from coffer.subscriptions.periods import add_months
from tests.fakes._http import Request, Response, Webhook, random_id, route

INTERVAL_MONTHS = {"month": 1, "year": 12}


class StripeBillingFake:
    """Customers, prices, subscriptions and their invoices; needs `StripeFake`'s tables."""

    lock: Any
    payment_intents: dict[str, dict[str, Any]]
    customers: dict[str, dict[str, Any]]
    prices: dict[str, dict[str, Any]]
    subscriptions: dict[str, dict[str, Any]]
    invoices: dict[str, dict[str, Any]]

    def _billing_tables(self) -> None:
        self.customers = {}
        self.prices = {}
        self.subscriptions = {}
        self.invoices = {}

    @route("POST", r"/v1/customers")
    def create_customer(self, request: Request) -> Response:
        data = request.form()
        customer = {
            "id": random_id("cus_"),
            "object": "customer",
            "created": int(time.time()),
            "email": data.get("email"),
            "metadata": _metadata(data.get("metadata")),
        }
        self.customers[customer["id"]] = customer
        return Response(200, customer)

    @route("POST", r"/v1/prices")
    def create_price(self, request: Request) -> Response:
        data = request.form()
        amount = _amount(data.get("unit_amount"), param="unit_amount")
        currency = _currency(data.get("currency"))
        recurring = data.get("recurring")
        interval = recurring.get("interval") if isinstance(recurring, dict) else None
        if interval not in ("day", "week", "month", "year"):
            raise _error("Invalid recurring[interval]", param="recurring[interval]")
        product = data.get("product_data")
        if not data.get("product") and not (isinstance(product, dict) and product.get("name")):
            raise _error("Missing required param: product.", param="product")
        price = {
            "id": random_id("price_1", 23),
            "object": "price",
            "active": True,
            "currency": currency,
            "unit_amount": amount,
            "recurring": {"interval": interval, "interval_count": 1},
            "product": data.get("product") or random_id("prod_"),
            "metadata": _metadata(data.get("metadata")),
            "type": "recurring",
        }
        self.prices[price["id"]] = price
        return Response(200, price)

    @route("POST", r"/v1/subscriptions")
    def create_subscription(self, request: Request) -> Response:
        data = request.form()
        customer = self.customers.get(data.get("customer") or "")
        if customer is None:
            raise _error(
                f"No such customer: '{data.get('customer')}'", status=404, param="customer"
            )
        items = data.get("items")
        first = items.get("0") if isinstance(items, dict) else None
        price = self.prices.get(first.get("price") if isinstance(first, dict) else "")
        if price is None:
            raise _error("No such price", status=404, param="items[0][price]")
        if data.get("payment_behavior") != "default_incomplete":
            raise _error("The fake needs payment_behavior=default_incomplete")
        now = int(time.time())
        subscription = {
            "id": random_id("sub_1", 23),
            "object": "subscription",
            "customer": customer["id"],
            "status": "incomplete",
            "cancel_at_period_end": False,
            "current_period_start": now,
            "current_period_end": _add(now, price),
            "items": {"object": "list", "data": [{"price": copy.deepcopy(price)}]},
            "latest_invoice": None,
            "metadata": _metadata(data.get("metadata")),
            "created": now,
        }
        self.subscriptions[subscription["id"]] = subscription
        invoice = self._new_invoice(subscription, start=now, reason="subscription_create")
        return Response(200, self._expanded(subscription, invoice, _expand(data)))

    @route("GET", r"/v1/subscriptions/(?P<subscription_id>[^/]+)")
    def retrieve_subscription(self, request: Request, subscription_id: str) -> Response:
        return Response(200, self._subscription(subscription_id))

    @route("POST", r"/v1/subscriptions/(?P<subscription_id>[^/]+)")
    def update_subscription(self, request: Request, subscription_id: str) -> Response:
        subscription = self._subscription(subscription_id)
        data = request.form()
        if subscription["status"] == "canceled":
            raise _error("A canceled subscription can only update its metadata")
        if "cancel_at_period_end" in data:
            subscription["cancel_at_period_end"] = data["cancel_at_period_end"] == "true"
        return Response(200, subscription)

    # -- test-only helpers ---------------------------------------------------------------------

    def pay_invoice(self, subscription_id: str) -> Webhook:
        """The customer pays the open invoice (the first one, confirmed with its client
        secret), or the bank pays the next period's: `invoice.paid`."""
        with self.lock:
            subscription = self._subscription(subscription_id)
            invoice = self._open_or_next(subscription)
            invoice.update(status="paid", amount_paid=invoice["amount_due"], paid=True)
            intent = self.payment_intents[invoice["payment_intent"]]
            intent.update(status="succeeded", amount_received=intent["amount"])
            period = invoice["lines"]["data"][0]["period"]
            subscription.update(
                status="active",
                current_period_start=period["start"],
                current_period_end=period["end"],
            )
            return self._emit("invoice.paid", invoice)  # type: ignore[attr-defined,no-any-return]

    def fail_invoice(self, subscription_id: str) -> Webhook:
        """The next period's charge is declined: `invoice.payment_failed`, `past_due`."""
        with self.lock:
            subscription = self._subscription(subscription_id)
            invoice = self._open_or_next(subscription)
            invoice["attempt_count"] += 1
            intent = self.payment_intents[invoice["payment_intent"]]
            intent.update(
                status="requires_payment_method",
                last_payment_error={"code": "card_declined", "message": "Your card was declined."},
            )
            if subscription["status"] == "active":
                subscription["status"] = "past_due"
            return self._emit("invoice.payment_failed", invoice)  # type: ignore[attr-defined,no-any-return]

    def end_subscription(self, subscription_id: str) -> Webhook:
        """Stripe ends it (its retries ran out, or it was cancelled in the dashboard)."""
        with self.lock:
            subscription = self._subscription(subscription_id)
            subscription.update(status="canceled", ended_at=int(time.time()))
            return self._emit("customer.subscription.deleted", subscription)  # type: ignore[attr-defined,no-any-return]

    # -- internals -----------------------------------------------------------------------------

    def _subscription(self, subscription_id: str) -> dict[str, Any]:
        found = self.subscriptions.get(subscription_id)
        if found is None:
            raise _error(
                f"No such subscription: '{subscription_id}'",
                status=404,
                param="id",
            )
        return found

    def _open_or_next(self, subscription: dict[str, Any]) -> dict[str, Any]:
        latest = self.invoices[subscription["latest_invoice"]]
        if latest["status"] == "open":
            return latest
        last_end = latest["lines"]["data"][0]["period"]["end"]
        return self._new_invoice(subscription, start=last_end, reason="subscription_cycle")

    def _new_invoice(
        self, subscription: dict[str, Any], *, start: int, reason: str
    ) -> dict[str, Any]:
        price = subscription["items"]["data"][0]["price"]
        end = _add(start, price)
        intent_id = random_id("pi_3", 23)
        self.payment_intents[intent_id] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": price["unit_amount"],
            "amount_received": 0,
            "currency": price["currency"],
            "client_secret": f"{intent_id}_secret_{random_id('', 25)}",
            "customer": subscription["customer"],
            "status": "requires_payment_method",
            "latest_charge": None,
            "last_payment_error": None,
            "metadata": {},
            "created": int(time.time()),
        }
        invoice = {
            "id": random_id("in_1", 23),
            "object": "invoice",
            "customer": subscription["customer"],
            "billing_reason": reason,
            "status": "open",
            "paid": False,
            "amount_due": price["unit_amount"],
            "amount_paid": 0,
            "attempt_count": 0,
            "currency": price["currency"],
            "payment_intent": intent_id,
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": subscription["id"], "metadata": {}},
            },
            "lines": {
                "object": "list",
                "data": [
                    {
                        "object": "line_item",
                        "amount": price["unit_amount"],
                        "period": {"start": start, "end": end},
                    }
                ],
            },
            # Stripe's own `period_*` name the period before, for a renewal: Coffer must not
            # read them (the line's period is the one billed).
            "period_start": start if reason == "subscription_create" else start - 1,
            "period_end": start,
            "created": int(time.time()),
        }
        self.invoices[invoice["id"]] = invoice
        subscription["latest_invoice"] = invoice["id"]
        return invoice

    def _expanded(
        self, subscription: dict[str, Any], invoice: dict[str, Any], expand: set[str]
    ) -> dict[str, Any]:
        answer = copy.deepcopy(subscription)
        if "latest_invoice" in expand or "latest_invoice.payment_intent" in expand:
            shown = copy.deepcopy(invoice)
            if "latest_invoice.payment_intent" in expand:
                shown["payment_intent"] = copy.deepcopy(
                    self.payment_intents[invoice["payment_intent"]]
                )
            answer["latest_invoice"] = shown
        return answer


def _expand(data: dict[str, Any]) -> set[str]:
    """`expand[]=x` or `expand[0]=x` (the SDK sends the second)."""
    value = data.get("expand")
    if isinstance(value, dict):
        return {str(v) for v in value.values()}
    return {str(value)} if value else set()


def _add(start_s: int, price: dict[str, Any]) -> int:
    months = INTERVAL_MONTHS.get(price["recurring"]["interval"])
    assert months is not None, "the fake bills monthly and yearly prices"
    return int(add_months(datetime.fromtimestamp(start_s, UTC), months).timestamp())


def _error(message: str, *, status: int = 400, param: str | None = None) -> Exception:
    from tests.fakes.stripe_api import stripe_error

    return stripe_error(message, status=status, param=param)


def _amount(value: Any, *, param: str) -> int:
    from tests.fakes.stripe_api import _amount as amount

    return amount(value)


def _currency(value: Any) -> str:
    from tests.fakes.stripe_api import _currency as currency

    return currency(value)


def _metadata(value: Any) -> dict[str, str]:
    from tests.fakes.stripe_api import _metadata as metadata

    return metadata(value)
