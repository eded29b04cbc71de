"""Admin refunds: full and partial, through the provider, clawing diamonds back in proportion."""

from __future__ import annotations

from typing import Any

import pytest

from coffer import ledger
from coffer.payments.refunds import clawback_for
from coffer.payments.service import PaymentOrder
from tests.api.harness import Api, assert_error
from tests.payments.helpers import assert_books_clean, paid_topup, topup, wallet_balance


def refund(api: Api, order_id: str, **body: Any) -> Any:
    body.setdefault("reason", "customer asked")
    return api.client.post(
        f"/admin/payment-orders/{order_id}/refund", json=body, headers=api.admin()
    )


def spend(api: Api, user_id: str, amount: int) -> None:
    """Move diamonds out of a wallet (a gift to someone) straight through the ledger."""
    from coffer.wallets.service import wallet_account

    with api.database.unit_of_work() as session:
        source = wallet_account(session, user_id)
        target = wallet_account(session, "sink")
        ledger.transfer(
            session,
            debit_account_id=source.id,
            credit_account_id=target.id,
            amount=amount,
            type="gift",
        )


def test_full_refund_claws_back_everything(api: Api) -> None:
    order = paid_topup(api, "alice", package_id="popular")  # ₹449 for 500 + 100
    response = refund(api, order["id"])
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["refund"]["status"] == "succeeded"
    assert (result["refund"]["amount"], result["refund"]["diamonds"]) == (44_900, 600)
    assert result["order"]["status"] == "refunded" and result["order"]["refunded_amount"] == 44_900
    assert wallet_balance(api, "alice") == 0
    # Nothing more to refund.
    assert_error(refund(api, order["id"]), 409, "invalid_state")
    assert_books_clean(api)


def test_partial_refunds_add_up_to_exactly_the_order(api: Api) -> None:
    order = paid_topup(api, "bob", package_id="basic")  # ₹229 for 250 + 40 = 290
    first = refund(api, order["id"], amount=10_000).json()
    assert first["order"]["status"] == "partially_refunded"
    assert first["refund"]["diamonds"] == 290 * 10_000 // 22_900  # 126
    assert_error(refund(api, order["id"], amount=12_901), 422, "validation_error")
    rest = refund(api, order["id"]).json()
    assert rest["refund"]["amount"] == 12_900
    assert first["refund"]["diamonds"] + rest["refund"]["diamonds"] == 290
    assert rest["order"]["status"] == "refunded"
    assert wallet_balance(api, "bob") == 0
    assert_books_clean(api)


def test_refund_of_spent_diamonds_is_refused_unless_forced(api: Api) -> None:
    order = paid_topup(api, "carol", package_id="starter")  # ₹99 for 100
    spend(api, "carol", 70)
    details = assert_error(refund(api, order["id"]), 402, "insufficient_funds")
    assert details == {"diamonds": 100, "available": 30}
    assert wallet_balance(api, "carol") == 30
    forced = refund(api, order["id"], force=True)
    assert forced.status_code == 201, forced.text
    body = forced.json()["refund"]
    assert (body["diamonds"], body["shortfall_diamonds"]) == (30, 70)
    assert wallet_balance(api, "carol") == 0
    with api.database.read() as session:
        debt = ledger.find_account(
            session, asset="DIAMOND", owner_type="user", owner_id="carol", kind="receivable"
        )
        assert debt is not None and debt.balance == -70
    assert_books_clean(api)


def test_refund_bad_input_and_states(api: Api) -> None:
    unpaid = topup(api, "dave")
    assert_error(refund(api, unpaid["id"]), 409, "invalid_state")
    assert_error(refund(api, "pay_nope"), 404, "not_found")
    paid = paid_topup(api, "dave")
    for amount in (0, -1, 1.5, "100", True):
        response = refund(api, paid["id"], amount=amount)
        assert_error(response, 422, "validation_error")
    assert_error(refund(api, paid["id"], reason=""), 422, "validation_error")
    user_try = api.client.post(
        f"/admin/payment-orders/{paid['id']}/refund", json={"reason": "x"}, headers=api.user("dave")
    )
    assert_error(user_try, 403, "forbidden")
    assert wallet_balance(api, "dave") == 600
    assert_books_clean(api)


def test_refund_idempotency_key(api: Api) -> None:
    order = paid_topup(api, "erin", package_id="popular")
    headers = {**api.admin(), "Idempotency-Key": "refund-1"}
    path = f"/admin/payment-orders/{order['id']}/refund"
    first = api.client.post(path, json={"amount": 1_000, "reason": "r"}, headers=headers)
    again = api.client.post(path, json={"amount": 1_000, "reason": "r"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["refund"]["id"] == again.json()["refund"]["id"]
    other = api.client.post(path, json={"amount": 2_000, "reason": "r"}, headers=headers)
    assert_error(other, 409, "idempotency_conflict")
    detail = api.client.get(f"/admin/payment-orders/{order['id']}", headers=api.admin()).json()
    assert [r["amount"] for r in detail["refunds"]] == [1_000]
    assert_books_clean(api)


@pytest.mark.parametrize(
    ("total", "price", "steps"),
    [(600, 44_900, [1, 2, 44_897]), (290, 22_900, [10_000, 12_900]), (1, 9_900, [9_899, 1])],
)
def test_clawback_rounds_so_full_refund_takes_everything(
    total: int, price: int, steps: list[int]
) -> None:
    order = PaymentOrder(
        id="p",
        user_id="u",
        purpose="topup",
        provider="mock",
        provider_order_id=None,
        provider_payment_id=None,
        status="succeeded",
        amount=price,
        currency="INR",
        diamonds=total,
        bonus=0,
        package_id=None,
        refunded_amount=0,
        refund_pending_amount=0,
        diamonds_clawed_back=0,
        failure_reason=None,
        payment_transfer_id=None,
        credit_transfer_id=None,
        checkout={},
        metadata={},
        created_at=None,  # type: ignore[arg-type]
        updated_at=None,
        succeeded_at=None,  # type: ignore[arg-type]
    )
    taken, refunded = 0, 0
    for step in steps:
        taken += clawback_for(order, refunded_before=refunded, amount=step)
        refunded += step
    assert taken == total


def test_a_refund_the_provider_could_not_answer_is_resumed(db, stripe_fake) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from coffer.kit.clock import utc_now
    from coffer.payments import refund_flows
    from tests.api.harness import make_api

    with make_api(db, **stripe_fake.settings_values()) as api:
        response = api.client.post(
            "/wallet/topup",
            json={"package_id": "starter", "provider": "stripe"},
            headers=api.user("gus"),
        )
        order = response.json()["order"]
        hook = stripe_fake.succeed_payment(order["provider_order_id"])
        assert (
            api.client.post("/webhooks/stripe", content=hook.body, headers=hook.headers).status_code
            == 200
        )
        stripe_fake.fail_next(503, count=3)  # every attempt the adapter makes
        down = refund(api, order["id"])
        assert_error(down, 503, "provider_unavailable")
        # The diamonds stay reserved by the pending refund.
        balance = api.client.get("/wallet/balance", headers=api.user("gus")).json()["accounts"][0]
        assert (balance["posted"], balance["pending_out"]) == (100, 100)
        providers = api.coffer.app.state.providers
        assert (
            refund_flows.resume_refunds(api.database, providers, utc_now) == 0
        )  # not stalled long enough
        later = lambda: utc_now() + timedelta(minutes=5)  # noqa: E731
        assert refund_flows.resume_refunds(api.database, providers, later) == 1
        detail = api.client.get(f"/admin/payment-orders/{order['id']}", headers=api.admin()).json()
        assert detail["order"]["status"] == "refunded"
        assert [r["status"] for r in detail["refunds"]] == ["succeeded"]
        assert len(stripe_fake.refunds) == 1
        assert_books_clean(api)
