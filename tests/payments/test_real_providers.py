"""Razorpay and Stripe top-ups end to end: the app's adapters drive the official SDKs over HTTP
to the local fakes, and the fakes' signed webhooks come back in through the app."""

from __future__ import annotations

import time

from coffer.db import Database
from tests.api.harness import Api, assert_error, make_api
from tests.fakes.razorpay_api import RazorpayFake
from tests.fakes.stripe_api import StripeFake
from tests.payments.helpers import assert_books_clean, wallet_balance


def _topup(api: Api, user: str, provider: str, package: str = "popular") -> dict[str, object]:
    response = api.client.post(
        "/wallet/topup", json={"package_id": package, "provider": provider}, headers=api.user(user)
    )
    assert response.status_code == 201, response.text
    order: dict[str, object] = response.json()["order"]
    return order


def test_razorpay_topup_verify_webhook_and_refund(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        order = _topup(api, "asha", "razorpay")
        assert str(order["provider_order_id"]).startswith("order_")
        assert order["checkout"]["key_id"] == razorpay_fake.key_id  # type: ignore[index]
        stored = razorpay_fake.orders[str(order["provider_order_id"])]
        assert (stored["amount"], stored["currency"], stored["receipt"]) == (
            44_900,
            "INR",
            order["id"],
        )

        paid = razorpay_fake.pay_order(str(order["provider_order_id"]))
        tampered = api.client.post(
            "/wallet/verify",
            json={
                "order_id": order["id"],
                "payment_id": paid.payment_id,
                "signature": paid.signature[:-1] + ("0" if paid.signature[-1] != "0" else "1"),
            },
            headers=api.user("asha"),
        )
        assert_error(tampered, 400, "invalid_signature")
        assert wallet_balance(api, "asha") == 0
        verified = api.client.post(
            "/wallet/verify",
            json={
                "order_id": order["id"],
                "payment_id": paid.payment_id,
                "signature": paid.signature,
            },
            headers=api.user("asha"),
        )
        assert verified.status_code == 200, verified.text
        assert verified.json()["order"]["status"] == "succeeded"
        assert wallet_balance(api, "asha") == 600

        # Razorpay's own webhook for the same capture arrives later: nothing moves again.
        captured = razorpay_fake.webhook("payment.captured")
        response = api.client.post(
            "/webhooks/razorpay", content=captured.body, headers=captured.headers
        )
        assert response.status_code == 200 and response.json()["duplicate"] is False
        again = api.client.post(
            "/webhooks/razorpay", content=captured.body, headers=captured.headers
        )
        assert again.json()["duplicate"] is True
        assert wallet_balance(api, "asha") == 600

        refund = api.client.post(
            f"/admin/payment-orders/{order['id']}/refund",
            json={"amount": 4_490, "reason": "partial"},
            headers=api.admin(),
        )
        assert refund.status_code == 201, refund.text
        assert refund.json()["order"]["status"] == "partially_refunded"
        assert [r["amount"] for r in razorpay_fake.refunds.values()] == [4_490]
        assert wallet_balance(api, "asha") == 540
        assert_books_clean(api)


def test_razorpay_webhook_before_verify_and_failed_then_captured(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        order = _topup(api, "ben", "razorpay", package="starter")
        razorpay_fake.fail_order(str(order["provider_order_id"]))
        failed = razorpay_fake.webhook("payment.failed")
        assert (
            api.client.post(
                "/webhooks/razorpay", content=failed.body, headers=failed.headers
            ).status_code
            == 200
        )
        paid = razorpay_fake.pay_order(str(order["provider_order_id"]))
        captured = razorpay_fake.webhook("payment.captured")
        assert (
            api.client.post(
                "/webhooks/razorpay", content=captured.body, headers=captured.headers
            ).status_code
            == 200
        )
        assert wallet_balance(api, "ben") == 100
        late_verify = api.client.post(
            "/wallet/verify",
            json={
                "order_id": order["id"],
                "payment_id": paid.payment_id,
                "signature": paid.signature,
            },
            headers=api.user("ben"),
        )
        assert late_verify.status_code == 200 and late_verify.json()["credited"] is False
        reserialised = captured.body.replace(b'":', b'": ')
        assert_error(
            api.client.post("/webhooks/razorpay", content=reserialised, headers=captured.headers),
            400,
            "invalid_signature",
        )
        assert wallet_balance(api, "ben") == 100
        assert_books_clean(api)


def test_stripe_topup_by_webhook_then_verify_and_refund(
    db: Database, stripe_fake: StripeFake
) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _topup(api, "chen", "stripe")
        intent_id = str(order["provider_order_id"])
        assert intent_id.startswith("pi_")
        checkout = order["checkout"]
        assert checkout["client_secret"].startswith(intent_id)  # type: ignore[index]
        intent = stripe_fake.payment_intents[intent_id]
        assert (intent["amount"], intent["currency"]) == (44_900, "inr")

        succeeded = stripe_fake.succeed_payment(intent_id)
        stale = stripe_fake.webhook("payment_intent.succeeded", timestamp=int(time.time()) - 301)
        assert_error(
            api.client.post("/webhooks/stripe", content=stale.body, headers=stale.headers),
            400,
            "invalid_signature",
        )
        assert wallet_balance(api, "chen") == 0
        response = api.client.post(
            "/webhooks/stripe", content=succeeded.body, headers=succeeded.headers
        )
        assert response.status_code == 200, response.text
        assert wallet_balance(api, "chen") == 600
        # Stripe may deliver twice: the inbox answers 200 and does nothing.
        assert api.client.post(
            "/webhooks/stripe", content=succeeded.body, headers=succeeded.headers
        ).json()["duplicate"]

        verified = api.client.post(
            "/wallet/verify",
            json={
                "order_id": order["id"],
                "payment_id": intent_id,
                "signature": checkout["client_secret"],
            },  # type: ignore[index]
            headers=api.user("chen"),
        )
        assert verified.status_code == 200 and verified.json()["credited"] is False

        refund = api.client.post(
            f"/admin/payment-orders/{order['id']}/refund",
            json={"reason": "duplicate"},
            headers=api.admin(),
        )
        assert refund.status_code == 201, refund.text
        assert refund.json()["order"]["status"] == "refunded"
        assert wallet_balance(api, "chen") == 0
        assert_books_clean(api)


def test_stripe_verify_with_client_secret(db: Database, stripe_fake: StripeFake) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _topup(api, "dana", "stripe", package="basic")
        intent_id = str(order["provider_order_id"])
        wrong = api.client.post(
            "/wallet/verify",
            json={
                "order_id": order["id"],
                "payment_id": intent_id,
                "signature": order["checkout"]["client_secret"],
            },  # type: ignore[index]
            headers=api.user("dana"),
        )
        assert_error(wrong, 409, "invalid_state")  # not paid yet: nothing credited
        assert wallet_balance(api, "dana") == 0
        stripe_fake.succeed_payment(intent_id)
        right = api.client.post(
            "/wallet/verify",
            json={
                "order_id": order["id"],
                "payment_id": intent_id,
                "signature": order["checkout"]["client_secret"],
            },  # type: ignore[index]
            headers=api.user("dana"),
        )
        assert right.status_code == 200, right.text
        assert wallet_balance(api, "dana") == 290
        assert_books_clean(api)


def test_stripe_events_out_of_order_never_move_an_order_backwards(
    db: Database, stripe_fake: StripeFake
) -> None:
    """Stripe promises no order: the customer's first try fails, the second succeeds, and the
    events arrive newest first. The order ends succeeded, credited once."""
    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _topup(api, "eli", "stripe", package="starter")
        intent_id = str(order["provider_order_id"])
        processing = stripe_fake.process_payment(intent_id)
        failed = stripe_fake.fail_payment(intent_id)
        succeeded = stripe_fake.succeed_payment(intent_id)
        for event in (succeeded, failed, processing, succeeded):
            response = api.client.post(
                "/webhooks/stripe", content=event.body, headers=event.headers
            )
            assert response.status_code == 200, response.text
        orders = api.client.get("/wallet/payment-orders", headers=api.user("eli")).json()["data"]
        assert [(o["id"], o["status"]) for o in orders] == [(order["id"], "succeeded")]
        assert wallet_balance(api, "eli") == 100
        assert_books_clean(api)
