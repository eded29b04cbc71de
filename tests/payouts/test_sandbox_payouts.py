"""Payees and payouts through the HTTP app with the sandbox provider: the happy path, every
refusal with nothing moved, a failed payout returning the money, a retry, a reversal."""

from __future__ import annotations

from typing import Any

from tests.api.harness import Api, assert_error, error_fields
from tests.payments.helpers import assert_books_clean, mock_provider, webhook
from tests.payouts.helpers import (
    BANK,
    FAILING_BANK,
    VPA,
    approve_kyc,
    earn,
    earnings,
    event_types,
    payout,
    payout_transfers,
    put_payee,
    request_payout,
)


def test_a_payout_is_held_then_paid_at_the_rate(api: Api) -> None:
    earn(api, "asha", 5_000)
    made = put_payee(api, "asha", "mock", BANK)
    assert made.status_code == 200, made.text
    body = made.json()
    assert (body["provider"], body["status"], body["requirements"]) == ("mock", "active", [])
    assert body["destination"] == {
        "type": "bank_account", "name": "Asha Rao", "ifsc": "HDFC0001234", "account_last4": "6789",
    }  # fmt: skip
    assert "50100123456789" not in made.text
    assert api.client.get("/payees/me", headers=api.user("asha")).json()["status"] == "active"

    response = request_payout(api, "asha", 2_050, key="k1")
    assert response.status_code == 202, response.text
    answer = response.json()["payout"]
    assert (answer["status"], answer["amount"], answer["asset"]) == ("pending", 2_050, "DIAMOND")
    # 100 diamonds = ₹1: 2050 diamonds are 2050 paise, rounded down.
    assert (answer["payout_amount"], answer["payout_currency"], answer["rate"]) == (
        2_050,
        "INR",
        100,
    )
    settled = payout(api, "asha", answer["id"])
    assert settled["status"] == "paid" and settled["provider_payout_id"].startswith("mock_pout_")
    assert earnings(api, "asha") == (2_950, 2_950)

    again = request_payout(api, "asha", 2_050, key="k1")  # a retry of the same request
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == response.json()
    assert earnings(api, "asha") == (2_950, 2_950)
    listed = api.client.get("/wallet/payouts", headers=api.user("asha")).json()
    assert [p["id"] for p in listed["data"]] == [answer["id"]]
    assert api.client.get("/wallet/payouts", headers=api.user("asha")).json() == listed
    types = event_types(api, "asha")
    assert ("payout.updated", "pending") in types and ("payout.updated", "paid") in types
    assert ("wallet.updated", "earnings") in types
    admin = api.client.get("/admin/payouts", params={"status": "paid"}, headers=api.admin())
    assert [p["id"] for p in admin.json()["data"]] == [answer["id"]]
    assert api.client.get("/admin/payouts?status=failed", headers=api.admin()).json()["data"] == []
    assert_books_clean(api)


def test_every_refusal_moves_nothing(api: Api) -> None:
    earn(api, "asha", 5_000)
    assert_error(request_payout(api, "asha", 2_000), 403, "kyc_required")
    approve_kyc(api, "asha")
    assert_error(request_payout(api, "asha", 2_000), 403, "payee_required")
    assert_error(api.client.get("/payees/me", headers=api.user("asha")), 404, "not_found")
    bad_ifsc = {**BANK, "ifsc": "HDFC1234567"}
    assert "body.destination.bank_account.ifsc" in error_fields(
        put_payee(api, "asha", "mock", bad_ifsc)
    )
    assert error_fields(put_payee(api, "asha", "mock", {"type": "vpa", "address": "no-at-sign"}))
    refused = put_payee(api, "asha", "stripe", VPA)  # Stripe is off here, and pays no VPAs
    assert_error(refused, 422, "validation_error")
    assert put_payee(api, "asha", "mock", VPA).status_code == 200

    assert "body.amount" in error_fields(request_payout(api, "asha", 999))  # minimum 1000
    assert "body.amount" in error_fields(request_payout(api, "asha", 2_000.0))
    assert "body.asset" in error_fields(request_payout(api, "asha", 2_000, asset="USD"))
    details = assert_error(request_payout(api, "asha", 5_001), 402, "insufficient_funds")
    assert details["available"] == 5_000
    assert_error(
        api.client.post("/wallet/payout", json={"amount": 2_000}, headers=api.admin()),
        403,
        "forbidden",
    )
    assert earnings(api, "asha") == (5_000, 5_000)
    assert api.client.get("/wallet/payouts", headers=api.user("asha")).json()["data"] == []

    paid = request_payout(api, "asha", 2_000).json()["payout"]
    assert_error(
        api.client.get(f"/wallet/payouts/{paid['id']}", headers=api.user("ravi")), 404, "not_found"
    )
    retry = api.client.post(f"/admin/payouts/{paid['id']}/retry", json={}, headers=api.admin())
    assert_error(retry, 409, "invalid_state")
    user_retry = api.client.post(
        f"/admin/payouts/{paid['id']}/retry", json={}, headers=api.user("asha")
    )
    assert_error(user_retry, 403, "forbidden")
    assert earnings(api, "asha") == (3_000, 3_000)
    # A frozen wallet may not pay out; unfrozen, it may again.
    freeze = api.client.post(
        "/admin/users/asha/freeze", json={"reason": "chargeback review"}, headers=api.admin()
    )
    assert freeze.status_code == 200, freeze.text
    assert_error(request_payout(api, "asha", 2_000), 403, "account_frozen")
    assert earnings(api, "asha") == (3_000, 3_000)
    api.client.post("/admin/users/asha/unfreeze", json={"reason": "cleared"}, headers=api.admin())
    assert request_payout(api, "asha", 2_000).status_code == 202
    assert_books_clean(api)


def test_a_failed_payout_returns_the_money_and_a_retry_pays_it(api: Api) -> None:
    earn(api, "asha", 5_000)
    assert put_payee(api, "asha", "mock", FAILING_BANK).json()["status"] == "active"
    failed = request_payout(api, "asha", 3_000).json()["payout"]
    found = payout(api, "asha", failed["id"])
    assert found["status"] == "failed" and "closed" in found["failure_reason"]
    assert earnings(api, "asha") == (5_000, 5_000)
    assert_books_clean(api)

    earn_back = api.client.post(f"/admin/payouts/{failed['id']}/retry", json={"reason": "new bank"},
                                headers=api.admin())  # fmt: skip
    assert earn_back.status_code == 200 and earn_back.json()["payout"]["attempt"] == 1
    assert payout(api, "asha", failed["id"])["status"] == "failed"  # the same account again
    assert put_payee(api, "asha", "mock", BANK).status_code == 200
    retried = api.client.post(f"/admin/payouts/{failed['id']}/retry", json={}, headers=api.admin())
    assert retried.status_code == 200, retried.text
    assert payout(api, "asha", failed["id"])["status"] == "paid"
    assert payout(api, "asha", failed["id"])["attempt"] == 2
    assert earnings(api, "asha") == (2_000, 2_000)
    trail = api.client.get("/admin/audit-log?action=payout.retry", headers=api.admin()).json()
    assert [(e["subject_id"], e["reason"]) for e in trail["data"]] == [
        (failed["id"], None),
        (failed["id"], "new bank"),
    ]
    holds = [
        t for t in payout_transfers(api, failed["id"]) if ":hold:" in (t.idempotency_key or "")
    ]
    assert len(holds) == 3
    assert_books_clean(api)


def test_a_reversal_after_paid_returns_it_and_nothing_moves_back(api: Api) -> None:
    earn(api, "asha", 5_000)
    put_payee(api, "asha", "mock", VPA)
    paid = payout(api, "asha", request_payout(api, "asha", 4_000).json()["payout"]["id"])
    assert paid["status"] == "paid" and earnings(api, "asha") == (1_000, 1_000)
    fields: dict[str, Any] = {
        "payout_id": paid["provider_payout_id"],
        "amount": 4_000,
        "currency": "INR",
    }
    body, headers = mock_provider(api).build_webhook(
        "payout.reversed", event_id="evt_rev", **fields
    )
    first = api.client.post("/webhooks/mock", content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert payout(api, "asha", paid["id"])["status"] == "reversed"
    assert earnings(api, "asha") == (5_000, 5_000)
    replay = api.client.post("/webhooks/mock", content=body, headers=headers)
    assert replay.json()["duplicate"] is True
    # Late and out of order: a `paid`, a `processing` and a `failed` never undo the reversal.
    for kind in ("payout.paid", "payout.processing", "payout.failed"):
        assert webhook(api, kind, **fields).status_code == 200
    assert payout(api, "asha", paid["id"])["status"] == "reversed"
    assert earnings(api, "asha") == (5_000, 5_000)
    reversals = [t for t in payout_transfers(api, paid["id"]) if t.reversal_of is not None]
    assert len(reversals) == 1
    assert_books_clean(api)
