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
