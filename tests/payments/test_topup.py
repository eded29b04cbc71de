"""Top-ups through the mock provider: order, verify, webhooks, exactly-once crediting."""

from __future__ import annotations

import threading

import pytest

from coffer.config import ShopConfig
from coffer.payments.service import quote_topup
from tests.api.harness import Api, assert_error, error_fields
from tests.payments.helpers import (
    assert_books_clean,
    mock_provider,
    topup,
    verify,
    wallet_balance,
    webhook,
)


def test_package_topup_verify_credits_diamonds_and_bonus_once(api: Api) -> None:
    order = topup(api, "alice", package_id="popular")
    assert order["status"] == "created" and order["provider"] == "mock"
    assert (order["amount"], order["currency"], order["diamonds"], order["bonus"]) == (
        44_900,
        "INR",
        500,
        100,
    )
    assert set(order["checkout"]) == {"payment_id", "signature"}
    first = verify(api, "alice", order)
    assert first.status_code == 200, first.text
    assert first.json()["order"]["status"] == "succeeded" and first.json()["credited"] is True
    assert wallet_balance(api, "alice") == 600
    again = verify(api, "alice", order)
    assert again.status_code == 200 and again.json()["credited"] is False
    assert wallet_balance(api, "alice") == 600
    # The books: ₹449 from the provider's clearing to revenue, 600 diamonds issued.
    balance = api.client.get("/wallet/balance", headers=api.user("alice")).json()
    assert balance["totals"]["purchased"] == 600
    assert_books_clean(api)


def test_diamonds_topup_is_priced_at_the_rate() -> None:
    shop = ShopConfig()
    quote = quote_topup(shop, diamonds=1_000)
    assert (quote.amount, quote.currency, quote.diamonds, quote.bonus) == (10_000, "INR", 1_000, 0)
    assert quote_topup(shop, diamonds=101).amount == 1_010  # 10 paise a diamond, exactly


@pytest.mark.parametrize(
    "body",
    [
        {"diamonds": 99},  # ₹9.90, below the ₹10 minimum
        {"diamonds": 100.0},
        {"diamonds": -100},
        {"diamonds": 0},
        {"diamonds": "100"},
        {"diamonds": True},
        {"diamonds": 2**60},
        {"package_id": "popular", "diamonds": 100},
        {},
        {"package_id": "popular", "provider": "paypal"},
        {"package_id": "popular", "surprise": 1},
    ],
)
def test_bad_topups_are_422_and_make_nothing(api: Api, body: dict[str, object]) -> None:
    response = api.client.post("/wallet/topup", json=body, headers=api.user("alice"))
    assert response.status_code == 422, response.text
    assert_error(response, 422, "validation_error")
    orders = api.client.get("/wallet/payment-orders", headers=api.user("alice")).json()
    assert orders["data"] == []


def test_unknown_package_is_404(api: Api) -> None:
    response = api.client.post(
        "/wallet/topup", json={"package_id": "nope"}, headers=api.user("alice")
    )
    assert_error(response, 404, "not_found")


def test_topup_needs_a_user_token(api: Api) -> None:
    assert_error(
        api.client.post("/wallet/topup", json={"package_id": "popular"}), 401, "unauthenticated"
    )
    response = api.client.post("/wallet/topup", json={"package_id": "popular"}, headers=api.admin())
    assert_error(response, 403, "forbidden")


def test_disabled_provider_says_so(api: Api) -> None:
    response = api.client.post(
        "/wallet/topup",
        json={"package_id": "popular", "provider": "stripe"},
        headers=api.user("alice"),
    )
    # API.md: a top-up naming a provider that is off is a 422 that names it and says why.
    details = assert_error(response, 422, "validation_error")
    assert details["provider"] == "stripe"
    assert [f["field"] for f in details["fields"]] == ["provider"]
    assert "COFFER_STRIPE_API_KEY" in response.json()["error"]["message"]
    assert wallet_balance(api, "alice") == 0


@pytest.mark.parametrize("field", ["signature", "payment_id"])
def test_bad_signature_is_400_and_credits_nothing(api: Api, field: str) -> None:
    order = topup(api, "alice")
    original = order["checkout"][field]
    tampered = original[:-1] + ("0" if original[-1] != "0" else "1")
    response = verify(api, "alice", order, **{field: tampered})
    assert_error(response, 400, "invalid_signature")
    assert wallet_balance(api, "alice") == 0
    assert_books_clean(api)


def test_someone_elses_order_is_not_found(api: Api) -> None:
    order = topup(api, "alice")
    response = verify(api, "mallory", order)
    assert_error(response, 404, "not_found")
    assert wallet_balance(api, "alice") == 0
    assert wallet_balance(api, "mallory") == 0


def test_verify_unknown_order_and_bad_body(api: Api) -> None:
    response = api.client.post(
        "/wallet/verify",
        json={"order_id": "pay_nope", "payment_id": "x", "signature": "y"},
        headers=api.user("alice"),
    )
    assert_error(response, 404, "not_found")
    response = api.client.post("/wallet/verify", json={"order_id": 5}, headers=api.user("alice"))
    assert {"body.order_id", "body.payment_id", "body.signature"} <= error_fields(response)


def test_webhook_credits_and_replays_change_nothing(api: Api) -> None:
    order = topup(api, "bob", package_id="basic")
    fields = {
        "provider_order_id": order["provider_order_id"],
        "payment_id": order["checkout"]["payment_id"],
        "amount": order["amount"],
        "currency": order["currency"],
        "event_id": "mock_evt_1",
    }
    first = webhook(api, "payment.succeeded", **fields)
    assert first.status_code == 200, first.text
    assert first.json()["duplicate"] is False
    assert wallet_balance(api, "bob") == 290
    replay = webhook(api, "payment.succeeded", **fields)
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    # A later verify finds it credited.
    late = verify(api, "bob", order)
    assert late.status_code == 200 and late.json()["credited"] is False
    # A late failure event never moves a paid order backwards.
    failed = webhook(api, "payment.failed", **{**fields, "event_id": "mock_evt_2"})
    assert failed.status_code == 200
    orders = api.client.get("/wallet/payment-orders", headers=api.user("bob")).json()["data"]
    assert [o["status"] for o in orders] == ["succeeded"]
    assert wallet_balance(api, "bob") == 290
    assert_books_clean(api)


def test_failed_then_captured_is_credited(api: Api) -> None:
    order = topup(api, "carol", package_id="starter")
    base = {
        "provider_order_id": order["provider_order_id"],
        "payment_id": "mock_pay_x",
        "amount": order["amount"],
        "currency": "INR",
    }
    assert webhook(api, "payment.failed", failure_reason="card declined", **base).status_code == 200
    orders = api.client.get("/wallet/payment-orders", headers=api.user("carol")).json()["data"]
    assert orders[0]["status"] == "failed" and orders[0]["failure_reason"] == "card declined"
    assert webhook(api, "payment.succeeded", **base).status_code == 200
    assert wallet_balance(api, "carol") == 100
    assert_books_clean(api)


def test_webhook_bad_signature_stale_and_reserialised(api: Api) -> None:
    order = topup(api, "dave")
    fields = {
        "provider_order_id": order["provider_order_id"],
        "amount": order["amount"],
        "currency": "INR",
    }
    body, headers = mock_provider(api).build_webhook("payment.succeeded", **fields)
    tampered = body.replace(b'"amount":', b'"amount": ')
    assert_error(
        api.client.post("/webhooks/mock", content=tampered, headers=headers),
        400,
        "invalid_signature",
    )
    import time

    stale_body, stale_headers = mock_provider(api).build_webhook(
        "payment.succeeded", timestamp_s=int(time.time()) - 301, **fields
    )
    assert_error(
        api.client.post("/webhooks/mock", content=stale_body, headers=stale_headers),
        400,
        "invalid_signature",
    )
    assert_error(api.client.post("/webhooks/mock", content=body), 400, "invalid_signature")
    assert wallet_balance(api, "dave") == 0


def test_webhook_with_wrong_amount_is_parked_not_credited(api: Api) -> None:
    order = topup(api, "erin")
    response = webhook(
        api,
        "payment.succeeded",
        provider_order_id=order["provider_order_id"],
        amount=1,
        currency="INR",
    )
    assert response.status_code == 200  # stored; applying it failed for good
    assert wallet_balance(api, "erin") == 0
    assert_books_clean(api)


def test_verify_and_webhooks_racing_credit_exactly_once(api: Api) -> None:
    orders = [topup(api, f"racer{i}", package_id="starter") for i in range(4)]
    errors: list[str] = []

    def by_verify(order: dict[str, object], user: str) -> None:
        response = verify(api, user, order)  # type: ignore[arg-type]
        if response.status_code != 200:
            errors.append(response.text)

    def by_webhook(order: dict[str, object], n: int) -> None:
        response = webhook(
            api,
            "payment.succeeded",
            provider_order_id=order["provider_order_id"],
            amount=order["amount"],
            currency="INR",
            event_id=f"evt-{order['id']}-{n}",
        )
        if response.status_code != 200:
            errors.append(response.text)

    threads = []
    for i, order in enumerate(orders):
        for n in range(3):
            threads.append(threading.Thread(target=by_verify, args=(order, f"racer{i}")))
            threads.append(threading.Thread(target=by_webhook, args=(order, n)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i in range(4):
        assert wallet_balance(api, f"racer{i}") == 100
    assert_books_clean(api)


def test_topup_idempotency_key_replays_the_same_order(api: Api) -> None:
    headers = {**api.user("frank"), "Idempotency-Key": "topup-1"}
    first = api.client.post("/wallet/topup", json={"package_id": "starter"}, headers=headers)
    again = api.client.post("/wallet/topup", json={"package_id": "starter"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    conflict = api.client.post("/wallet/topup", json={"package_id": "basic"}, headers=headers)
    assert_error(conflict, 409, "idempotency_conflict")
    orders = api.client.get("/wallet/payment-orders", headers=api.user("frank")).json()["data"]
    assert len(orders) == 1


def test_admin_ledger_verify_reports_all_six_invariants(api: Api) -> None:
    order = topup(api, "gina")
    verify(api, "gina", order)
    response = api.client.get("/admin/ledger/verify", headers=api.admin())
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["ok"] is True
    assert [c["invariant"] for c in report["checks"]] == [1, 2, 3, 4, 5, 6]
    assert report["transfers"] == 3  # payment, diamonds, bonus
    assert_error(api.client.get("/admin/ledger/verify", headers=api.user("gina")), 403, "forbidden")
    # Tamper with the order: invariant 6 notices.
    from sqlalchemy import text

    with api.database.engine.begin() as conn:
        conn.execute(
            text("UPDATE payment_orders SET diamonds = 501 WHERE id = :id"), {"id": order["id"]}
        )
    report = api.client.get("/admin/ledger/verify", headers=api.admin()).json()
    assert report["ok"] is False
    assert [c["invariant"] for c in report["checks"] if not c["ok"]] == [6]
