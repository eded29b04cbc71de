"""Refunds never stick: a webhook before the provider's id is stored, a retry the provider
refuses, a refund acknowledged but never settled, charge.refunded for another refund, and a
refund that fails after it succeeded. The fakes settle refunds asynchronously here."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from coffer.db import Database
from coffer.kit.clock import utc_now
from coffer.payments import refund_flows
from coffer.webhooks.tables import inbox
from tests.api.harness import Api, assert_error, make_api
from tests.fakes.razorpay_api import RazorpayFake
from tests.fakes.stripe_api import StripeFake
from tests.payments.helpers import assert_books_clean, wallet_balance
from tests.payments.test_disputes import _deliver, _order, _razorpay_paid, _stripe_paid
from tests.payments.test_refunds import refund


def _later(minutes: int) -> Any:
    return lambda: utc_now() + timedelta(minutes=minutes)


def _pending_out(api: Api, user: str) -> int:
    accounts = api.client.get("/wallet/balance", headers=api.user(user)).json()["accounts"]
    return int(accounts[0]["pending_out"])


def test_refund_webhook_before_provider_id_stored_settles(
    db: Database, stripe_fake: StripeFake
) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _stripe_paid(api, stripe_fake, "ana")
        stripe_fake.refund_mode = "pending"
        stripe_fake.lose_next_responses(3)  # Stripe made the refund; its answer never came
        assert_error(refund(api, order["id"]), 503, "provider_unavailable")
        (ours,) = _order(api, order["id"])["refunds"]
        assert (ours["status"], ours["provider_refund_id"]) == ("pending", None)
        (at_stripe,) = stripe_fake.refunds
        _deliver(api, "stripe", stripe_fake.settle_refund(at_stripe))
        detail = _order(api, order["id"])
        assert [(r["status"], r["provider_refund_id"]) for r in detail["refunds"]] == [
            ("succeeded", at_stripe)
        ]
        assert detail["order"]["status"] == "refunded"
        assert wallet_balance(api, "ana") == 0
        assert _disputes_count(api) == 0  # ours: not mistaken for a dashboard refund
        assert_books_clean(api)


def test_razorpay_refund_webhook_before_provider_id_stored_settles(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        _razorpay_paid(api, razorpay_fake, "ben", package="starter")
        order_id = api.client.get("/admin/payment-orders", headers=api.admin()).json()["data"][0][
            "id"
        ]
        razorpay_fake.refund_mode = "pending"
        razorpay_fake.lose_next_responses(3)  # every attempt the adapter makes
        assert_error(refund(api, order_id), 503, "provider_unavailable")
        (at_razorpay,) = razorpay_fake.refunds
        razorpay_fake.process_refund(at_razorpay)
        _deliver(api, "razorpay", razorpay_fake.webhook("refund.processed"))
        detail = _order(api, order_id)
        assert [(r["status"], r["provider_refund_id"]) for r in detail["refunds"]] == [
            ("succeeded", at_razorpay)
        ]
        assert wallet_balance(api, "ben") == 0
        assert _disputes_count(api) == 0
        assert_books_clean(api)


def _disputes_count(api: Api) -> int:
    return len(api.client.get("/admin/disputes", headers=api.admin()).json()["data"])


def test_rejected_retry_reconciled_not_voided(db: Database, stripe_fake: StripeFake) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _stripe_paid(api, stripe_fake, "cat")
        headers = {**api.admin(), "Idempotency-Key": "refund-cat-1"}
        path = f"/admin/payment-orders/{order['id']}/refund"
        stripe_fake.lose_next_responses(3)
        lost = api.client.post(path, json={"reason": "asked"}, headers=headers)
        assert_error(lost, 503, "provider_unavailable")
        stripe_fake.forget_idempotency_keys()  # the retry comes after Stripe's 24 hours
        retried = api.client.post(path, json={"reason": "asked"}, headers=headers)
        assert retried.status_code == 201, retried.text
        assert retried.json()["refund"]["status"] == "succeeded"
        assert retried.json()["order"]["status"] == "refunded"
        assert len(stripe_fake.refunds) == 1  # Stripe refused the second: charge refunded
        assert wallet_balance(api, "cat") == 0
        assert _pending_out(api, "cat") == 0
        assert_books_clean(api)


def test_resumed_refund_asks_before_sending_again(db: Database, stripe_fake: StripeFake) -> None:
    """A partial refund whose answer was lost is found at Stripe, not made a second time."""
    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _stripe_paid(api, stripe_fake, "dan")
        stripe_fake.lose_next_responses(3)
        assert_error(refund(api, order["id"], amount=10_000), 503, "provider_unavailable")
        stripe_fake.forget_idempotency_keys()
        providers = api.coffer.app.state.providers
        assert refund_flows.resume_refunds(api.database, providers, _later(5)) == 1
        assert [r["amount"] for r in stripe_fake.refunds.values()] == [10_000]
        detail = _order(api, order["id"])
        assert [r["status"] for r in detail["refunds"]] == ["succeeded"]
        assert detail["order"]["refunded_amount"] == 10_000
        assert_books_clean(api)


def test_reconciler_finishes_acknowledged_refund(db: Database, stripe_fake: StripeFake) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _stripe_paid(api, stripe_fake, "eva")
        stripe_fake.refund_mode = "pending"
        made = refund(api, order["id"], amount=20_000)
        assert made.status_code == 201, made.text
        assert made.json()["refund"]["status"] == "pending"
        provider_id = made.json()["refund"]["provider_refund_id"]
        assert provider_id in stripe_fake.refunds
        stripe_fake.settle_refund(provider_id)  # its webhook is lost
        providers = api.coffer.app.state.providers
        assert refund_flows.reconcile_refunds(api.database, providers, utc_now) == 0  # too soon
        assert refund_flows.reconcile_refunds(api.database, providers, _later(20)) == 1
        detail = _order(api, order["id"])
        assert [r["status"] for r in detail["refunds"]] == ["succeeded"]
        assert detail["order"]["refunded_amount"] == 20_000
        assert refund_flows.reconcile_refunds(api.database, providers, _later(60)) == 0
        assert_books_clean(api)


def test_reconciler_fails_refund_the_provider_failed(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        _razorpay_paid(api, razorpay_fake, "fin", package="starter")
        order_id = api.client.get("/admin/payment-orders", headers=api.admin()).json()["data"][0][
            "id"
        ]
        razorpay_fake.refund_mode = "pending"
        made = refund(api, order_id)
        assert made.json()["refund"]["status"] == "pending"
        assert _pending_out(api, "fin") == 100
        razorpay_fake.fail_refund(made.json()["refund"]["provider_refund_id"])
        providers = api.coffer.app.state.providers
        assert refund_flows.reconcile_refunds(api.database, providers, _later(20)) == 1
        detail = _order(api, order_id)
        assert [r["status"] for r in detail["refunds"]] == ["failed"]
        assert (detail["order"]["status"], wallet_balance(api, "fin")) == ("succeeded", 100)
        assert _pending_out(api, "fin") == 0
        assert_books_clean(api)


def test_reconciler_gives_up_after_its_attempts_with_an_alert(
    db: Database, stripe_fake: StripeFake
) -> None:
    from coffer.payments.refunds import RECONCILE_ATTEMPTS_MAX

    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _stripe_paid(api, stripe_fake, "gia")
        stripe_fake.refund_mode = "pending"
        assert refund(api, order["id"]).status_code == 201
        providers = api.coffer.app.state.providers
        for step in range(1, RECONCILE_ATTEMPTS_MAX + 1):
            assert refund_flows.reconcile_refunds(api.database, providers, _later(20 * step)) == 1
        later = _later(20 * (RECONCILE_ATTEMPTS_MAX + 2))
        assert refund_flows.reconcile_refunds(api.database, providers, later) == 0
        kinds = [
            a["kind"] for a in api.client.get("/admin/alerts", headers=api.admin()).json()["data"]
        ]
        assert kinds == ["refund.unreconciled"]
        assert_books_clean(api)


def test_charge_refunded_only_for_its_refund(db: Database, stripe_fake: StripeFake) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _stripe_paid(api, stripe_fake, "hap")
        stripe_fake.refund_mode = "pending"
        made = refund(api, order["id"], amount=10_000)
        assert made.json()["refund"]["status"] == "pending"
        # charge.refunded names our refund, still pending at Stripe: nothing is booked.
        charged = stripe_fake.webhook("charge.refunded")
        _deliver(api, "stripe", charged)
        assert [r["status"] for r in _order(api, order["id"])["refunds"]] == ["pending"]
        # A charge.refunded whose refund has another amount than ours is parked, not booked.
        event = stripe_fake.webhook("charge.refunded").event
        forged = {**event, "id": "evt_forged_amount"}
        listed = forged["data"]["object"]["refunds"]["data"][0]
        listed.update(status="succeeded", amount=9_000)
        _deliver(api, "stripe", stripe_fake.sign(forged))
        with api.database.read() as session:
            parked = session.execute(
                select(inbox.c.status, inbox.c.last_error).where(
                    inbox.c.event_id == "evt_forged_amount"
                )
            ).one()
        assert parked.status == "failed" and "amount" in parked.last_error
        assert [r["status"] for r in _order(api, order["id"])["refunds"]] == ["pending"]
        # Settled: the refund.updated books it, once.
        provider_id = made.json()["refund"]["provider_refund_id"]
        _deliver(api, "stripe", stripe_fake.settle_refund(provider_id))
        detail = _order(api, order["id"])
        assert [r["status"] for r in detail["refunds"]] == ["succeeded"]
        assert detail["order"]["refunded_amount"] == 10_000
        assert_books_clean(api)


def test_refund_failed_after_succeeded_is_not_dropped(
    db: Database, stripe_fake: StripeFake
) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _stripe_paid(api, stripe_fake, "ida")
        made = refund(api, order["id"], amount=22_450)
        assert made.json()["refund"]["status"] == "succeeded"
        assert wallet_balance(api, "ida") == 300
        updated = stripe_fake.settle_refund(
            made.json()["refund"]["provider_refund_id"], succeed=False
        )
        _deliver(api, "stripe", updated)
        _deliver(api, "stripe", stripe_fake.webhook("refund.failed"))  # the same news again
        detail = _order(api, order["id"])
        assert [r["status"] for r in detail["refunds"]] == ["failed"]
        assert (detail["order"]["status"], detail["order"]["refunded_amount"]) == ("succeeded", 0)
        assert wallet_balance(api, "ida") == 600
        # The whole order can be refunded again afterwards.
        again = refund(api, order["id"])
        assert again.status_code == 201, again.text
        assert wallet_balance(api, "ida") == 0
        assert_books_clean(api)


def test_refund_webhook_without_our_id_waits_in_the_inbox(
    db: Database, stripe_fake: StripeFake
) -> None:
    """A provider refund that names no Coffer refund, while one of Coffer's of that amount
    awaits the provider's id, is retried through the inbox instead of clawed back twice."""
    from coffer.webhooks import flows as webhook_flows

    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _stripe_paid(api, stripe_fake, "jay")
        stripe_fake.refund_mode = "pending"
        stripe_fake.lose_next_responses(3)
        assert_error(refund(api, order["id"]), 503, "provider_unavailable")
        (at_stripe,) = stripe_fake.refunds
        event = stripe_fake.settle_refund(at_stripe).event
        bare = {**event, "id": "evt_no_metadata"}
        bare["data"]["object"]["metadata"] = {}
        _deliver(api, "stripe", stripe_fake.sign(bare))
        with api.database.read() as session:
            waiting = session.execute(
                select(inbox.c.status, inbox.c.last_error).where(
                    inbox.c.event_id == "evt_no_metadata"
                )
            ).one()
        assert waiting.status == "received" and "awaits" in waiting.last_error
        providers = api.coffer.app.state.providers
        assert refund_flows.resume_refunds(api.database, providers, _later(5)) == 1
        assert webhook_flows.retry_due(api.database, _later(10)) == 1
        detail = _order(api, order["id"])
        assert [r["status"] for r in detail["refunds"]] == ["succeeded"]
        assert wallet_balance(api, "jay") == 0
        assert _disputes_count(api) == 0
        assert_books_clean(api)
