"""Payouts through RazorpayX and Stripe Connect: the official SDKs talk HTTP to the local
fakes for every call, and the fakes' signed webhooks (or the reconciler) settle them."""

from __future__ import annotations

import threading

from coffer.db import Database
from tests.api.harness import Api, assert_error, make_api
from tests.fakes.razorpay_api import RazorpayFake
from tests.fakes.stripe_api import StripeFake
from tests.payments.helpers import assert_books_clean
from tests.payouts.helpers import (
    BANK,
    VPA,
    earn,
    earnings,
    payout,
    payout_transfers,
    put_payee,
    reconcile,
    request_payout,
)


def _deliver(api: Api, provider: str, hook: object) -> None:
    response = api.client.post(
        f"/webhooks/{provider}",
        content=hook.body,
        headers=hook.headers,  # type: ignore[attr-defined]
    )
    assert response.status_code == 200, response.text


def test_razorpayx_payee_payout_webhooks_and_reversal(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        earn(api, "asha", 10_000)
        made = put_payee(api, "asha", "razorpay", BANK)
        assert made.status_code == 200, made.text
        assert made.json()["status"] == "active"
        (contact,) = razorpay_fake.contacts.values()
        (fund_account,) = razorpay_fake.fund_accounts.values()
        assert contact["reference_id"] == "asha" and fund_account["contact_id"] == contact["id"]
        assert fund_account["bank_account"]["ifsc"] == "HDFC0001234"
        assert put_payee(api, "asha", "razorpay", BANK).status_code == 200  # found again
        assert len(razorpay_fake.fund_accounts) == 1

        answer = request_payout(api, "asha", 5_000).json()["payout"]
        found = payout(api, "asha", answer["id"])
        assert found["status"] == "processing"
        stored = razorpay_fake.payouts[found["provider_payout_id"]]
        assert (stored["amount"], stored["fund_account_id"], stored["mode"]) == (
            5_000, fund_account["id"], "IMPS",
        )  # fmt: skip
        sent = next(r for r in razorpay_fake.requests if r.path == "/v1/payouts")
        assert sent.headers["x-payout-idempotency"] == answer["id"]
        assert earnings(api, "asha") == (10_000, 5_000)

        initiated = razorpay_fake.webhook("payout.initiated")
        razorpay_fake.process_payout(found["provider_payout_id"])
        _deliver(api, "razorpay", razorpay_fake.webhook("payout.processed"))
        assert payout(api, "asha", answer["id"])["status"] == "paid"
        _deliver(api, "razorpay", initiated)  # late: never moves it back
        assert payout(api, "asha", answer["id"])["status"] == "paid"
        assert earnings(api, "asha") == (5_000, 5_000)

        razorpay_fake.reverse_payout(found["provider_payout_id"])
        _deliver(api, "razorpay", razorpay_fake.webhook("payout.reversed"))
        assert payout(api, "asha", answer["id"])["status"] == "reversed"
        assert earnings(api, "asha") == (10_000, 10_000)
        assert_books_clean(api)


def test_razorpayx_refuses_a_bad_destination_and_fails_a_payout(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        earn(api, "asha", 10_000)
        stripe_kind = put_payee(api, "asha", "razorpay", {"type": "stripe_account"})
        assert_error(stripe_kind, 422, "validation_error")
        assert razorpay_fake.contacts == {}
        assert put_payee(api, "asha", "razorpay", VPA).json()["status"] == "active"
        answer = request_payout(api, "asha", 3_000).json()["payout"]
        provider_id = payout(api, "asha", answer["id"])["provider_payout_id"]
        assert razorpay_fake.payouts[provider_id]["mode"] == "UPI"
        razorpay_fake.fail_payout(provider_id)
        _deliver(api, "razorpay", razorpay_fake.webhook("payout.failed"))
        failed = payout(api, "asha", answer["id"])
        assert (
            failed["status"] == "failed"
            and failed["failure_reason"] == "Beneficiary bank is offline"
        )
        assert earnings(api, "asha") == (10_000, 10_000)
        razorpay_fake.process_payout(provider_id)  # a stray report after the failure: ignored
        _deliver(api, "razorpay", razorpay_fake.webhook("payout.processed"))
        assert payout(api, "asha", answer["id"])["status"] == "failed"
        assert_books_clean(api)


def test_the_reconciler_settles_a_payout_whose_webhook_never_came(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        earn(api, "asha", 10_000)
        put_payee(api, "asha", "razorpay", BANK)
        answer = request_payout(api, "asha", 4_000).json()["payout"]
        provider_id = payout(api, "asha", answer["id"])["provider_payout_id"]
        razorpay_fake.process_payout(provider_id)  # its webhook is lost
        assert reconcile(api, later_s=0) == 0  # not due yet
        runs: list[int] = []
        threads = [threading.Thread(target=lambda: runs.append(reconcile(api))) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(runs) == [0, 1]  # two runs at once: one took it, the other found nothing
        lookups = [r for r in razorpay_fake.requests if r.path == f"/v1/payouts/{provider_id}"]
        assert len(lookups) == 1
        assert payout(api, "asha", answer["id"])["status"] == "paid"
        posts = [
            t for t in payout_transfers(api, answer["id"]) if t.idempotency_key.endswith(":post")
        ]
        assert len(posts) == 1
        assert earnings(api, "asha") == (6_000, 6_000)
        assert reconcile(api) == 0  # settled: nothing left to ask about
        assert_books_clean(api)


def test_a_payout_the_provider_could_not_take_is_sent_again_by_the_reconciler(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        earn(api, "asha", 10_000)
        put_payee(api, "asha", "razorpay", BANK)
        razorpay_fake.fail_next(503, count=3)  # every attempt of the SDK call
        answer = request_payout(api, "asha", 4_000)
        assert answer.status_code == 202, answer.text
        payout_id = answer.json()["payout"]["id"]
        assert payout(api, "asha", payout_id)["status"] == "pending"
        assert earnings(api, "asha") == (10_000, 6_000)  # held meanwhile
        assert reconcile(api) == 1
        resent = payout(api, "asha", payout_id)
        assert resent["status"] == "processing" and len(razorpay_fake.payouts) == 1
        assert_books_clean(api)


def test_stripe_connected_account_onboarding_transfer_and_reversal(
    db: Database, stripe_fake: StripeFake
) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        earn(api, "asha", 10_000)
        made = put_payee(api, "asha", "stripe", {"type": "stripe_account", "country": "IN"})
        assert made.status_code == 200, made.text
        body = made.json()
        assert body["status"] == "pending" and body["onboarding_url"].startswith("https://connect.")
        assert "external_account" in body["requirements"]
        (account,) = stripe_fake.accounts.values()
        assert account["type"] == "express" and account["metadata"] == {"coffer_user_id": "asha"}
        assert (
            api.client.get("/payees/me", headers=api.user("asha")).json()["onboarding_url"] is None
        )
        assert_error(request_payout(api, "asha", 5_000), 403, "payee_required")
        assert earnings(api, "asha") == (10_000, 10_000)

        _deliver(api, "stripe", stripe_fake.complete_onboarding(account["id"]))
        assert api.client.get("/payees/me", headers=api.user("asha")).json()["status"] == "active"
        stripe_fake.fund("inr", 100_000)
        answer = request_payout(api, "asha", 5_000).json()["payout"]
        paid = payout(api, "asha", answer["id"])
        assert paid["status"] == "paid" and paid["provider_payout_id"].startswith("tr_")
        transfer = stripe_fake.transfers[paid["provider_payout_id"]]
        assert (transfer["amount"], transfer["destination"]) == (5_000, account["id"])
        assert transfer["metadata"] == {"coffer_payout_id": answer["id"]}
        _deliver(api, "stripe", stripe_fake.webhook("transfer.created"))  # nothing more
        assert earnings(api, "asha") == (5_000, 5_000)

        _deliver(api, "stripe", stripe_fake.reverse_transfer(paid["provider_payout_id"]))
        assert payout(api, "asha", answer["id"])["status"] == "reversed"
        assert earnings(api, "asha") == (10_000, 10_000)

        _deliver(api, "stripe", stripe_fake.reject_account(account["id"]))
        rejected = api.client.get("/payees/me", headers=api.user("asha")).json()
        assert rejected["status"] == "rejected" and "rejected.fraud" in rejected["requirements"]
        _deliver(api, "stripe", stripe_fake.complete_onboarding(account["id"]))  # never back
        assert api.client.get("/payees/me", headers=api.user("asha")).json()["status"] == "rejected"
        assert_error(request_payout(api, "asha", 5_000), 403, "payee_required")
        assert_books_clean(api)
