"""Razorpay Subscriptions and Stripe Billing end to end: the adapters drive the official SDKs
over HTTP to the local fakes, and the fakes' signed webhooks come back in through the app."""

from __future__ import annotations

from sqlalchemy import select

from coffer.db import Database
from coffer.subscriptions.periods import from_unix
from coffer.webhooks.tables import inbox
from tests.api.harness import Api, assert_error, make_api
from tests.fakes._http import Webhook
from tests.fakes.razorpay_api import RazorpayFake
from tests.fakes.stripe_api import StripeFake
from tests.payments.helpers import assert_books_clean
from tests.subscriptions.helpers import mine, parse, periods_booked, subscribe, subscription_charges

MONTHLY, YEARLY = "premium-monthly", "premium-yearly"


def inbox_statuses(api: Api) -> list[str]:
    with api.database.read() as session:
        return list(session.execute(select(inbox.c.status).order_by(inbox.c.id)).scalars())


def deliver(api: Api, provider: str, webhook: Webhook) -> None:
    response = api.client.post(
        f"/webhooks/{provider}", content=webhook.body, headers=webhook.headers
    )
    assert response.status_code == 200, response.text


def test_razorpay_subscription_charged_twice_books_once_and_cancels_at_cycle_end(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        response = subscribe(api, "asha", MONTHLY, "provider", provider="razorpay", key="rzp-1")
        assert response.status_code == 201, response.text
        sub = response.json()["subscription"]
        psid = sub["provider_subscription_id"]
        assert sub["status"] == "pending" and psid.startswith("sub_")
        assert sub["checkout"] == {"key_id": razorpay_fake.key_id, "subscription_id": psid}
        (plan,) = razorpay_fake.plans.values()
        assert (plan["period"], plan["item"]["amount"], plan["item"]["currency"]) == (
            "monthly",
            9_900,
            "INR",
        )
        stored = razorpay_fake.subscriptions[psid]
        assert stored["notes"]["coffer_subscription_id"] == sub["id"]
        # A replay asks Razorpay nothing again.
        again = subscribe(api, "asha", MONTHLY, "provider", provider="razorpay", key="rzp-1")
        assert again.json() == response.json() and len(razorpay_fake.subscriptions) == 1

        first = razorpay_fake.charge_subscription(psid)
        # The cycle's own payment.captured names no order of Coffer's: kept, and ignored.
        deliver(api, "razorpay", razorpay_fake.webhook("payment.captured"))
        assert inbox_statuses(api) == ["ignored"]
        deliver(api, "razorpay", first)
        deliver(api, "razorpay", first)  # the same delivery again
        assert inbox_statuses(api) == ["ignored", "processed"]
        me = mine(api, "asha")
        assert me["status"] == "active" and me["is_premium"]
        entity = first.event["payload"]["subscription"]["entity"]
        assert parse(me["paid_through"]) == from_unix(entity["current_end"])
        assert [amount for amount, _ in subscription_charges(api)] == [9_900]

        failed = razorpay_fake.fail_subscription_charge(psid)
        second = razorpay_fake.charge_subscription(psid)  # Razorpay's retry succeeded
        deliver(api, "razorpay", second)  # ... and its event came first
        deliver(api, "razorpay", failed)
        me = mine(api, "asha")
        assert me["status"] == "active" and periods_booked(api) == 2
        renewed = second.event["payload"]["subscription"]["entity"]
        assert renewed["current_start"] == entity["current_end"]
        assert parse(me["paid_through"]) == from_unix(renewed["current_end"])

        cancelled = api.client.delete("/subscriptions/me", headers=api.user("asha"))
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["cancel_at_period_end"] is True
        assert razorpay_fake.subscriptions[psid]["has_scheduled_changes"] is True
        cancel_calls = [r for r in razorpay_fake.requests if r.path.endswith("/cancel")]
        assert [r.json() for r in cancel_calls] == [{"cancel_at_cycle_end": 1}]
        assert_books_clean(api)


def test_razorpay_halted_expires_and_a_bad_signature_is_refused(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        sub = subscribe(api, "ravi", YEARLY, "provider", provider="razorpay").json()["subscription"]
        psid = sub["provider_subscription_id"]
        charged = razorpay_fake.charge_subscription(psid)
        forged = razorpay_fake.sign(charged.event, secret="not-the-secret")
        bad = api.client.post("/webhooks/razorpay", content=forged.body, headers=forged.headers)
        assert_error(bad, 400, "invalid_signature")
        assert mine(api, "ravi")["status"] == "pending" and subscription_charges(api) == []
        deliver(api, "razorpay", charged)
        assert [amount for amount, _ in subscription_charges(api)] == [99_900]
        deliver(api, "razorpay", razorpay_fake.fail_subscription_charge(psid))
        assert mine(api, "ravi")["status"] == "past_due"
        deliver(api, "razorpay", razorpay_fake.halt_subscription(psid))
        me = mine(api, "ravi")
        assert me["status"] == "expired" and me["is_premium"]  # the paid year still counts
        assert_books_clean(api)


def test_razorpay_refusing_the_subscription_records_nothing(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        razorpay_fake.fail_next(
            400, body={"error": {"code": "BAD_REQUEST_ERROR", "description": "no"}}
        )
        refused = subscribe(api, "asha", MONTHLY, "provider", provider="razorpay")
        assert_error(refused, 502, "provider_rejected")
        razorpay_fake.fail_next(503)
        down = subscribe(api, "asha", MONTHLY, "provider", provider="razorpay")
        assert_error(down, 503, "provider_unavailable")
        assert mine(api, "asha")["status"] is None
        # Nothing live was left behind: the next try works.
        assert subscribe(api, "asha", MONTHLY, "provider", provider="razorpay").status_code == 201
        assert_books_clean(api)


def test_stripe_billing_first_invoice_renewal_failure_and_cancel(
    db: Database, stripe_fake: StripeFake
) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        response = subscribe(api, "sam", MONTHLY, "provider", provider="stripe", key="st-1")
        assert response.status_code == 201, response.text
        sub = response.json()["subscription"]
        psid = sub["provider_subscription_id"]
        stored = stripe_fake.subscriptions[psid]
        invoice = stripe_fake.invoices[stored["latest_invoice"]]
        intent = stripe_fake.payment_intents[invoice["payment_intent"]]
        assert sub["checkout"] == {
            "client_secret": intent["client_secret"],
            "publishable_key": stripe_fake.publishable_key,
        }
        assert stored["metadata"]["coffer_subscription_id"] == sub["id"]
        create = next(r for r in stripe_fake.requests if r.path == "/v1/subscriptions")
        form = create.form()
        assert form["payment_behavior"] == "default_incomplete"
        assert "latest_invoice.payment_intent" in form["expand"].values()
        (price,) = stripe_fake.prices.values()
        assert (price["unit_amount"], price["currency"], price["recurring"]["interval"]) == (
            9_900,
            "inr",
            "month",
        )
        again = subscribe(api, "sam", MONTHLY, "provider", provider="stripe", key="st-1")
        assert again.json() == response.json() and len(stripe_fake.subscriptions) == 1

        first = stripe_fake.pay_invoice(psid)
        deliver(api, "stripe", first)
        deliver(api, "stripe", stripe_fake.sign(first.event))  # redelivered: same event id
        me = mine(api, "sam")
        assert me["status"] == "active" and me["is_premium"]
        period = first.event["data"]["object"]["lines"]["data"][0]["period"]
        assert parse(me["paid_through"]) == from_unix(period["end"])

        failed = stripe_fake.fail_invoice(psid)
        deliver(api, "stripe", failed)
        assert mine(api, "sam")["status"] == "past_due"
        assert mine(api, "sam")["paid_through"] == me["paid_through"]  # access to paid_through
        renewed = stripe_fake.pay_invoice(psid)  # Stripe's retry of that invoice succeeded
        deliver(api, "stripe", renewed)
        # The old failure again, late and under another event id: nothing moves back.
        deliver(api, "stripe", stripe_fake.sign({**failed.event, "id": "evt_1LateCopy"}))
        me = mine(api, "sam")
        assert me["status"] == "active" and periods_booked(api) == 2
        renewed_period = renewed.event["data"]["object"]["lines"]["data"][0]["period"]
        assert parse(me["paid_through"]) == from_unix(renewed_period["end"])
        assert [amount for amount, _ in subscription_charges(api)] == [9_900, 9_900]

        cancelled = api.client.delete("/subscriptions/me", headers=api.user("sam"))
        assert cancelled.status_code == 200 and cancelled.json()["cancel_at_period_end"]
        assert stripe_fake.subscriptions[psid]["cancel_at_period_end"] is True
        deliver(api, "stripe", stripe_fake.end_subscription(psid))
        assert mine(api, "sam")["status"] == "canceled"
        assert_books_clean(api)
