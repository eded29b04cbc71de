"""Money that leaves at the provider comes back out of the books: dashboard refunds, disputes
and a verify of a payment the provider reports refunded, over the real SDKs and the fakes."""

from __future__ import annotations

from typing import Any

from coffer import ledger
from coffer.db import Database
from tests.api.harness import Api, make_api
from tests.fakes._http import Webhook
from tests.fakes.razorpay_api import RazorpayFake
from tests.fakes.stripe_api import StripeFake
from tests.payments.helpers import assert_books_clean, wallet_balance
from tests.payments.test_refunds import spend


def _deliver(api: Api, provider: str, hook: Webhook) -> dict[str, Any]:
    response = api.client.post(f"/webhooks/{provider}", content=hook.body, headers=hook.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _stripe_paid(api: Api, fake: StripeFake, user: str, package: str = "popular") -> dict[str, Any]:
    response = api.client.post(
        "/wallet/topup", json={"package_id": package, "provider": "stripe"}, headers=api.user(user)
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()["order"]
    _deliver(api, "stripe", fake.succeed_payment(order["provider_order_id"]))
    return order


def _order(api: Api, order_id: str) -> dict[str, Any]:
    response = api.client.get(f"/admin/payment-orders/{order_id}", headers=api.admin())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _disputes(api: Api, **query: str) -> list[dict[str, Any]]:
    response = api.client.get("/admin/disputes", params=query, headers=api.admin())
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def _alert_kinds(api: Api) -> list[str]:
    response = api.client.get("/admin/alerts", headers=api.admin())
    assert response.status_code == 200, response.text
    return [a["kind"] for a in response.json()["data"]]


def _debt(api: Api, user: str) -> int:
    with api.database.read() as session:
        account = ledger.find_account(
            session, asset="DIAMOND", owner_type="user", owner_id=user, kind="receivable"
        )
        return 0 if account is None else -account.balance


def test_dashboard_refund_claws_back_diamonds(db: Database, stripe_fake: StripeFake) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _stripe_paid(api, stripe_fake, "ann")  # 44,900 for 600 diamonds
        assert wallet_balance(api, "ann") == 600
        stripe_fake.dashboard_refund(order["provider_order_id"], 22_450)
        _deliver(api, "stripe", stripe_fake.webhook("charge.refunded"))
        assert wallet_balance(api, "ann") == 300
        detail = _order(api, order["id"])
        assert detail["order"]["status"] == "partially_refunded"
        assert detail["order"]["refunded_amount"] == 22_450
        assert [(r["created_by"], r["status"]) for r in detail["refunds"]] == [
            ("provider", "succeeded")
        ]
        # The refund.created for the same refund, and a replay, claw nothing twice.
        _deliver(api, "stripe", stripe_fake.webhook("refund.created"))
        _deliver(api, "stripe", stripe_fake.webhook("charge.refunded"))
        assert wallet_balance(api, "ann") == 300
        (dispute,) = _disputes(api)
        assert (dispute["kind"], dispute["status"], dispute["amount"], dispute["diamonds"]) == (
            "provider_refund",
            "closed",
            22_450,
            300,
        )
        assert _alert_kinds(api) == ["refund.provider"]
        assert_books_clean(api)


def test_dispute_won_releases_clawback(db: Database, stripe_fake: StripeFake) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _stripe_paid(api, stripe_fake, "bo")
        opened = stripe_fake.open_dispute(order["provider_order_id"])
        _deliver(api, "stripe", opened)
        balance = api.client.get("/wallet/balance", headers=api.user("bo")).json()["accounts"][0]
        assert (balance["posted"], balance["pending_out"]) == (600, 600)  # held, not spendable
        (dispute,) = _disputes(api, status="open")
        assert (dispute["amount"], dispute["diamonds"]) == (44_900, 600)
        won = stripe_fake.close_dispute(opened.event["data"]["object"]["id"], won=True)
        _deliver(api, "stripe", won)
        _deliver(api, "stripe", opened)  # a replay of the opening after the decision
        balance = api.client.get("/wallet/balance", headers=api.user("bo")).json()["accounts"][0]
        assert (balance["posted"], balance["pending_out"]) == (600, 0)
        assert _disputes(api, status="open") == []
        assert [d["status"] for d in _disputes(api)] == ["won"]
        detail = _order(api, order["id"])
        assert (detail["order"]["status"], detail["order"]["refunded_amount"]) == ("succeeded", 0)
        assert _alert_kinds(api) == ["dispute.won", "dispute.opened"]
        assert_books_clean(api)


def test_dispute_lost_when_wallet_spent_books_receivable(
    db: Database, stripe_fake: StripeFake
) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _stripe_paid(api, stripe_fake, "cy")
        spend(api, "cy", 450)
        opened = stripe_fake.open_dispute(order["provider_order_id"])
        _deliver(api, "stripe", opened)
        (dispute,) = _disputes(api)
        assert (dispute["diamonds"], dispute["shortfall_diamonds"]) == (150, 450)
        lost = stripe_fake.close_dispute(opened.event["data"]["object"]["id"], won=False)
        _deliver(api, "stripe", lost)
        _deliver(api, "stripe", lost)  # replayed: the inbox answers, nothing moves
        assert wallet_balance(api, "cy") == 0
        assert _debt(api, "cy") == 450
        detail = _order(api, order["id"])
        assert (detail["order"]["status"], detail["order"]["refunded_amount"]) == (
            "refunded",
            44_900,
        )
        assert [d["status"] for d in _disputes(api, status="lost")] == ["lost"]
        assert_books_clean(api)


def test_dispute_lost_before_opened_claws_once(db: Database, stripe_fake: StripeFake) -> None:
    """Out of order: the decision arrives first, then the opening; one clawback."""
    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _stripe_paid(api, stripe_fake, "dee", package="starter")  # 100 diamonds
        opened = stripe_fake.open_dispute(order["provider_order_id"], amount=4_950)
        lost = stripe_fake.close_dispute(opened.event["data"]["object"]["id"], won=False)
        _deliver(api, "stripe", lost)
        _deliver(api, "stripe", opened)
        assert wallet_balance(api, "dee") == 50
        assert [(d["status"], d["diamonds"]) for d in _disputes(api)] == [("lost", 50)]
        assert_books_clean(api)


def test_verify_of_refunded_payment_claws_back(db: Database, stripe_fake: StripeFake) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        response = api.client.post(
            "/wallet/topup", json={"package_id": "popular", "provider": "stripe"},
            headers=api.user("eve"),
        )  # fmt: skip
        order = response.json()["order"]
        intent_id = order["provider_order_id"]
        stripe_fake.succeed_payment(intent_id)
        stripe_fake.dashboard_refund(intent_id)  # refunded in full before the client verifies
        verified = api.client.post(
            "/wallet/verify",
            json={
                "order_id": order["id"],
                "payment_id": intent_id,
                "signature": order["checkout"]["client_secret"],
            },
            headers=api.user("eve"),
        )
        assert verified.status_code == 200, verified.text
        assert verified.json()["order"]["status"] == "refunded"
        assert wallet_balance(api, "eve") == 0
        # The refund's own webhooks come later and find it booked.
        _deliver(api, "stripe", stripe_fake.webhook("refund.created"))
        _deliver(api, "stripe", stripe_fake.webhook("charge.refunded"))
        assert wallet_balance(api, "eve") == 0
        assert [d["kind"] for d in _disputes(api)] == ["provider_refund"]
        assert_books_clean(api)


def test_disputes_list_pages_and_rejects_bad_input(db: Database, stripe_fake: StripeFake) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        for user in ("fay", "gil", "hal"):
            order = _stripe_paid(api, stripe_fake, user, package="starter")
            _deliver(api, "stripe", stripe_fake.open_dispute(order["provider_order_id"]))
        first = api.client.get("/admin/disputes", params={"limit": 2}, headers=api.admin()).json()
        assert len(first["data"]) == 2 and first["has_more"] is True
        rest = api.client.get(
            "/admin/disputes", params={"limit": 2, "cursor": first["next_cursor"]},
            headers=api.admin(),
        ).json()  # fmt: skip
        assert len(rest["data"]) == 1 and rest["has_more"] is False and rest["next_cursor"] is None
        ids = [d["id"] for d in first["data"] + rest["data"]]
        assert len(set(ids)) == 3
        bad = api.client.get("/admin/disputes", params={"status": "nope"}, headers=api.admin())
        assert bad.status_code == 422
        bad_cursor = api.client.get("/admin/disputes", params={"cursor": "x"}, headers=api.admin())
        assert bad_cursor.status_code == 422
        assert api.client.get("/admin/disputes", headers=api.user("fay")).status_code == 403
        assert api.client.get("/admin/alerts", headers=api.user("fay")).status_code == 403
        alerts = api.client.get("/admin/alerts", params={"limit": 2}, headers=api.admin()).json()
        more = api.client.get(
            "/admin/alerts", params={"cursor": alerts["next_cursor"]}, headers=api.admin()
        ).json()
        assert [a["id"] for a in alerts["data"] + more["data"]] == sorted(
            (a["id"] for a in alerts["data"] + more["data"]), reverse=True
        )
        assert len(alerts["data"] + more["data"]) == 3
        assert_books_clean(api)


# -- Razorpay ----------------------------------------------------------------------------------


def _razorpay_order(api: Api, user: str, package: str = "popular") -> dict[str, Any]:
    response = api.client.post(
        "/wallet/topup", json={"package_id": package, "provider": "razorpay"},
        headers=api.user(user),
    )  # fmt: skip
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()["order"]
    return order


def _razorpay_paid(api: Api, fake: RazorpayFake, user: str, package: str = "popular") -> str:
    """A paid Razorpay top-up; returns the payment id."""
    order = _razorpay_order(api, user, package)
    paid = fake.pay_order(order["provider_order_id"])
    _deliver(api, "razorpay", fake.webhook("payment.captured"))
    return paid.payment_id


def test_razorpay_dashboard_refund_claws_back_diamonds(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        payment_id = _razorpay_paid(api, razorpay_fake, "ivy")
        razorpay_fake.dashboard_refund(payment_id, 11_225)  # a quarter
        _deliver(api, "razorpay", razorpay_fake.webhook("refund.processed"))
        _deliver(api, "razorpay", razorpay_fake.webhook("refund.processed"))
        assert wallet_balance(api, "ivy") == 450
        assert [(d["kind"], d["diamonds"]) for d in _disputes(api)] == [("provider_refund", 150)]
        assert _alert_kinds(api) == ["refund.provider"]
        assert_books_clean(api)


def test_razorpay_dispute_lost_when_wallet_spent_books_receivable(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        payment_id = _razorpay_paid(api, razorpay_fake, "jo", package="starter")
        spend(api, "jo", 100)
        dispute_id = razorpay_fake.open_dispute(payment_id)
        _deliver(api, "razorpay", razorpay_fake.webhook("payment.dispute.created"))
        razorpay_fake.close_dispute(dispute_id, won=False)
        _deliver(api, "razorpay", razorpay_fake.webhook("payment.dispute.lost"))
        assert _debt(api, "jo") == 100
        assert [(d["status"], d["shortfall_diamonds"]) for d in _disputes(api)] == [("lost", 100)]
        assert_books_clean(api)


def test_razorpay_dispute_closed_without_deduction_releases_clawback(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        payment_id = _razorpay_paid(api, razorpay_fake, "kai", package="starter")
        dispute_id = razorpay_fake.open_dispute(payment_id)
        _deliver(api, "razorpay", razorpay_fake.webhook("payment.dispute.created"))
        balance = api.client.get("/wallet/balance", headers=api.user("kai")).json()["accounts"][0]
        assert balance["pending_out"] == 100
        razorpay_fake.close_dispute(dispute_id, won=True, event="payment.dispute.closed")
        _deliver(api, "razorpay", razorpay_fake.webhook("payment.dispute.closed"))
        balance = api.client.get("/wallet/balance", headers=api.user("kai")).json()["accounts"][0]
        assert (balance["posted"], balance["pending_out"]) == (100, 0)
        assert [d["status"] for d in _disputes(api)] == ["won"]
        assert_books_clean(api)


def test_razorpay_verify_of_refunded_payment_claws_back(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        order = _razorpay_order(api, "lu")
        paid = razorpay_fake.pay_order(order["provider_order_id"])
        razorpay_fake.dashboard_refund(paid.payment_id)
        assert razorpay_fake.payments[paid.payment_id]["status"] == "refunded"
        verified = api.client.post(
            "/wallet/verify",
            json={"order_id": order["id"], "payment_id": paid.payment_id,
                  "signature": paid.signature},
            headers=api.user("lu"),
        )  # fmt: skip
        assert verified.status_code == 200, verified.text
        assert verified.json()["order"]["status"] == "refunded"
        assert wallet_balance(api, "lu") == 0
        _deliver(api, "razorpay", razorpay_fake.webhook("payment.captured"))
        _deliver(api, "razorpay", razorpay_fake.webhook("refund.processed"))
        assert wallet_balance(api, "lu") == 0
        assert len(_disputes(api)) == 1
        assert_books_clean(api)


def test_mock_dispute_and_dashboard_refund_events(api: Api) -> None:
    """The sandbox's webhooks carry the same kinds: a dispute opened then lost, a refund made
    at the provider, each clawed back once."""
    from tests.payments.helpers import paid_topup, webhook

    order = paid_topup(api, "max", package_id="popular")
    payment = order["provider_payment_id"]
    fields = {"payment_id": payment, "currency": "INR"}
    for _ in range(2):  # delivered twice: one hold
        webhook(api, "dispute.opened", dispute_id="dp_mock_1", amount=22_450, **fields)
    balance = api.client.get("/wallet/balance", headers=api.user("max")).json()["accounts"][0]
    assert balance["pending_out"] == 300
    webhook(api, "dispute.lost", dispute_id="dp_mock_1", amount=22_450, **fields)
    webhook(api, "refund.succeeded", refund_id="mock_rfnd_dash", amount=22_450, **fields)
    assert wallet_balance(api, "max") == 0
    assert sorted((d["kind"], d["status"]) for d in _disputes(api)) == [
        ("dispute", "lost"),
        ("provider_refund", "closed"),
    ]
    assert _order(api, order["id"])["order"]["status"] == "refunded"
    assert_books_clean(api)


def test_open_dispute_is_never_sent_to_the_provider_as_a_refund(
    db: Database, stripe_fake: StripeFake
) -> None:
    """An open dispute's reservation is a pending refund row without a provider id, like a
    refund whose call was lost: the resume and reconcile jobs must leave it to the dispute."""
    from datetime import timedelta

    from coffer.kit.clock import utc_now
    from coffer.payments import refund_flows

    with make_api(db, **stripe_fake.settings_values()) as api:
        order = _stripe_paid(api, stripe_fake, "ned")
        _deliver(api, "stripe", stripe_fake.open_dispute(order["provider_order_id"]))
        providers = api.coffer.app.state.providers
        later = lambda: utc_now() + timedelta(hours=2)  # noqa: E731
        assert refund_flows.resume_refunds(api.database, providers, later) == 0
        assert refund_flows.reconcile_refunds(api.database, providers, later) == 0
        assert stripe_fake.refunds == {}
        assert [r["status"] for r in _order(api, order["id"])["refunds"]] == ["pending"]
        assert_books_clean(api)
