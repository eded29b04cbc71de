"""Escrow over the Stripe SDK and the local Stripe fake: funded by its webhook, refunded through
it, with a refund that stays pending and then fails putting the escrow back where it was."""

from __future__ import annotations

from typing import Any

from coffer.db import Database
from tests.api.harness import Api, make_api
from tests.escrow.test_escrow import get, inr_wallet, move
from tests.fakes.stripe_api import StripeFake
from tests.payments.helpers import assert_books_clean


def deliver(api: Api, hook: Any) -> None:
    response = api.client.post("/webhooks/stripe", content=hook.body, headers=hook.headers)
    assert response.status_code == 200, response.text


def stripe_escrow(api: Api, stripe_fake: StripeFake, amount: int = 50_000) -> dict[str, Any]:
    response = api.client.post(
        "/escrows",
        json={"payee_id": "seller", "amount": amount, "currency": "INR", "provider": "stripe"},
        headers=api.user("buyer"),
    )
    assert response.status_code == 201, response.text
    escrow: dict[str, Any] = response.json()["escrow"]
    deliver(api, stripe_fake.succeed_payment(escrow["order"]["provider_order_id"]))
    held = get(api, escrow["id"])
    assert held["status"] == "held"
    return held


def test_a_pending_refund_that_fails_puts_the_escrow_back(
    db: Database, stripe_fake: StripeFake
) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        escrow = stripe_escrow(api, stripe_fake)
        released = move(api, escrow["id"], "release", api.user("buyer"), amount=20_000)
        assert released.status_code == 200, released.text
        stripe_fake.refund_mode = "pending"
        response = move(api, escrow["id"], "refund", api.admin(), reason="buyer asked")
        assert response.status_code == 200, response.text
        assert response.json()["escrow"]["status"] == "refunding"
        # Nothing more moves while the provider works.
        again = move(api, escrow["id"], "release", api.user("buyer"))
        assert again.status_code == 409
        (refund_id,) = list(stripe_fake.refunds)
        deliver(api, stripe_fake.settle_refund(refund_id, succeed=False))
        back = get(api, escrow["id"])
        assert (back["status"], back["left"]) == ("partially_released", 30_000)
        stripe_fake.refund_mode = "instant"
        response = move(api, escrow["id"], "refund", api.admin(), reason="buyer asked again")
        assert response.json()["escrow"]["status"] == "refunded", response.text
        assert inr_wallet(api, "seller") == 19_000
        assert_books_clean(api)


def test_a_refund_whose_answer_was_lost_finishes_on_the_same_request_again(
    db: Database, stripe_fake: StripeFake
) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        escrow = stripe_escrow(api, stripe_fake)
        headers = {**api.admin(), "Idempotency-Key": "refund-lost"}
        stripe_fake.lose_next_responses(3)  # Stripe made the refund; no answer came back
        first = move(api, escrow["id"], "refund", headers, reason="buyer asked")
        assert first.status_code == 503, first.text
        assert get(api, escrow["id"])["status"] == "refunding"
        again = move(api, escrow["id"], "refund", headers, reason="buyer asked")
        assert again.status_code == 200, again.text
        assert again.json()["escrow"]["status"] == "refunded"
        assert len(stripe_fake.refunds) == 1  # asked twice with one key: refunded once
        replay = move(api, escrow["id"], "refund", headers, reason="buyer asked")
        assert replay.content == again.content
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert_books_clean(api)


def test_the_same_request_after_its_refund_failed_is_refused_again_and_moves_nothing(
    db: Database, stripe_fake: StripeFake
) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        escrow = stripe_escrow(api, stripe_fake)
        headers = {**api.admin(), "Idempotency-Key": "refund-failed"}
        stripe_fake.refund_mode = "pending"
        stripe_fake.lose_next_responses(3)
        assert move(api, escrow["id"], "refund", headers, reason="buyer asked").status_code == 503
        (refund_id,) = list(stripe_fake.refunds)
        deliver(api, stripe_fake.settle_refund(refund_id, succeed=False))
        back = get(api, escrow["id"])
        assert (back["status"], back["left"]) == ("held", 50_000)
        again = move(api, escrow["id"], "refund", headers, reason="buyer asked")
        assert again.status_code == 502, again.text
        assert again.json()["error"]["code"] == "provider_rejected"
        assert get(api, escrow["id"]) == back
        assert len(stripe_fake.refunds) == 1
        assert_books_clean(api)
