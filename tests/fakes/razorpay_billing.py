"""Razorpay Subscriptions in the fake (a mixin of `RazorpayFake`): `POST /v1/plans`,
`POST /v1/subscriptions`, `GET /v1/subscriptions/{id}`, `POST /v1/subscriptions/{id}/cancel`,
and test helpers that play the bank charging a cycle:

    webhook = fake.charge_subscription(sub_id)        # signed `subscription.charged`
    webhook = fake.fail_subscription_charge(sub_id)   # signed `subscription.pending`
    webhook = fake.halt_subscription(sub_id)          # signed `subscription.halted`

A charge books the next cycle (`current_start`..`current_end`, a calendar month or year from
the last; after a failure, the failed cycle again) with a captured payment, as Razorpay's
`subscription.charged` carries both.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from coffer.subscriptions.periods import add_months
from tests.fakes._http import HttpError, Request, Response, Webhook, random_id, route

PERIODS = {"daily", "weekly", "monthly", "yearly"}
MONTHS = {"monthly": 1, "yearly": 12}


def _bad(description: str, *, field: str | None = None) -> HttpError:
    error: dict[str, Any] = {"code": "BAD_REQUEST_ERROR", "description": description}
    if field:
        error["field"] = field
    return HttpError(400, {"error": error})


class RazorpayBillingFake:
    """Plans and subscriptions; needs `RazorpayFake`'s lock, `_emit` and `webhook`."""

    lock: Any
    plans: dict[str, dict[str, Any]]
    subscriptions: dict[str, dict[str, Any]]

    def _billing_tables(self) -> None:
        self.plans = {}
        self.subscriptions = {}

    @route("POST", r"/v1/plans")
    def create_plan(self, request: Request) -> Response:
        data = request.json()
        period, interval, item = data.get("period"), data.get("interval"), data.get("item")
        if period not in PERIODS:
            raise _bad("period is invalid", field="period")
        if type(interval) is not int or interval < 1:
            raise _bad("interval must be an integer", field="interval")
        if not isinstance(item, dict) or not item.get("name"):
            raise _bad("item.name is required", field="item")
        amount = item.get("amount")
        if type(amount) is not int or amount < 100:
            raise _bad("The amount must be atleast INR 1.00", field="amount")
        plan = {
            "id": random_id("plan_"),
            "entity": "plan",
            "interval": interval,
            "period": period,
            "item": {**item, "active": True, "unit_amount": amount},
            "notes": data.get("notes") or {},
            "created_at": int(time.time()),
        }
        self.plans[plan["id"]] = plan
        return Response(200, plan)

    @route("POST", r"/v1/subscriptions")
    def create_subscription(self, request: Request) -> Response:
        data = request.json()
        plan = self.plans.get(data.get("plan_id"))
        if plan is None:
            raise _bad("The id provided does not exist", field="plan_id")
        total = data.get("total_count")
        if type(total) is not int or total < 1:
            raise _bad("total_count is required", field="total_count")
        subscription = {
            "id": random_id("sub_"),
            "entity": "subscription",
            "plan_id": plan["id"],
            "status": "created",
            "current_start": None,
            "current_end": None,
            "ended_at": None,
            "quantity": 1,
            "notes": data.get("notes") or {},
            "charge_at": None,
            "start_at": None,
            "end_at": None,
            "auth_attempts": 0,
            "total_count": total,
            "paid_count": 0,
            "customer_notify": bool(data.get("customer_notify", 1)),
            "created_at": int(time.time()),
            "short_url": f"https://rzp.io/i/{random_id('', 8)}",
            "has_scheduled_changes": False,
            "remaining_count": total,
        }
        self.subscriptions[subscription["id"]] = subscription
        return Response(200, subscription)

    @route("GET", r"/v1/subscriptions/(?P<subscription_id>[^/]+)")
    def fetch_subscription(self, request: Request, subscription_id: str) -> Response:
        return Response(200, self._subscription(subscription_id))

    @route("POST", r"/v1/subscriptions/(?P<subscription_id>[^/]+)/cancel")
    def cancel_subscription(self, request: Request, subscription_id: str) -> Response:
        subscription = self._subscription(subscription_id)
        if subscription["status"] in ("cancelled", "completed", "expired"):
            raise _bad("Subscription is not cancellable in cancelled status.")
        at_cycle_end = request.json().get("cancel_at_cycle_end") in (1, True, "1")
        if at_cycle_end and subscription["status"] == "active":
            subscription.update(has_scheduled_changes=True, end_at=subscription["current_end"])
        else:
            subscription.update(status="cancelled", ended_at=int(time.time()))
            self._emit("subscription.cancelled", subscription=subscription)  # type: ignore[attr-defined]
        return Response(200, subscription)

    # -- test-only helpers ---------------------------------------------------------------------

    def charge_subscription(self, subscription_id: str) -> Webhook:
        """The bank pays the next cycle: the subscription is active for it; signed event."""
        with self.lock:
            subscription = self._subscription(subscription_id)
            plan = self.plans[subscription["plan_id"]]
            if subscription["status"] == "pending":
                # Razorpay's retry of the cycle whose charge failed.
                start, end = subscription["current_start"], subscription["current_end"]
            else:
                start = subscription["current_end"] or int(time.time())
                end = _add_cycle(start, plan)
            payment = {
                "id": random_id("pay_"),
                "entity": "payment",
                "amount": plan["item"]["amount"],
                "currency": plan["item"]["currency"],
                "status": "captured",
                "order_id": random_id("order_"),
                "invoice_id": random_id("inv_"),
                "method": "upi",
                "captured": True,
                "error_description": None,
                "created_at": int(time.time()),
            }
            subscription.update(
                status="active",
                current_start=start,
                current_end=end,
                charge_at=end,
                start_at=subscription["start_at"] or start,
                paid_count=subscription["paid_count"] + 1,
                remaining_count=subscription["remaining_count"] - 1,
            )
            self.payments[payment["id"]] = payment  # type: ignore[attr-defined]
            # Razorpay tells of the payment itself too (it names the cycle's invoice).
            self._emit("payment.captured", payment=payment)  # type: ignore[attr-defined]
            self._emit("subscription.charged", subscription=subscription, payment=payment)  # type: ignore[attr-defined]
            return self.webhook("subscription.charged")  # type: ignore[attr-defined,no-any-return]

    def fail_subscription_charge(self, subscription_id: str) -> Webhook:
        """The next cycle's charge fails; Razorpay retries it (`pending`)."""
        with self.lock:
            subscription = self._subscription(subscription_id)
            plan = self.plans[subscription["plan_id"]]
            start = subscription["current_end"] or int(time.time())
            subscription.update(
                status="pending", current_start=start, current_end=_add_cycle(start, plan)
            )
            self._emit("subscription.pending", subscription=subscription)  # type: ignore[attr-defined]
            return self.webhook("subscription.pending")  # type: ignore[attr-defined,no-any-return]

    def halt_subscription(self, subscription_id: str) -> Webhook:
        """Razorpay's retries ran out."""
        with self.lock:
            subscription = self._subscription(subscription_id)
            subscription.update(status="halted")
            self._emit("subscription.halted", subscription=subscription)  # type: ignore[attr-defined]
            return self.webhook("subscription.halted")  # type: ignore[attr-defined,no-any-return]

    def _subscription(self, subscription_id: str) -> dict[str, Any]:
        found = self.subscriptions.get(subscription_id)
        if found is None:
            raise _bad("The id provided does not exist")
        return found


def _add_cycle(start_s: int, plan: dict[str, Any]) -> int:
    start = datetime.fromtimestamp(start_s, UTC)
    months = MONTHS.get(plan["period"])
    assert months is not None, "the fake charges monthly and yearly plans"
    return int(add_months(start, months * plan["interval"]).timestamp())
