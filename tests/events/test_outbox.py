"""The events outbox: written in the same commit as the change, ids in commit order, per-user
sequences with no gaps, each user's own only (issue 8, item 4)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.api.harness import Api, assert_error
from tests.gifts.test_send_gift import put_user
from tests.payments.helpers import paid_topup, topup, verify, webhook


def events_of(api: Api, user_id: str, after: int = 0) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = api.client.get(f"/events?after={after}&limit=500", headers=api.user(user_id))
        assert page.status_code == 200, page.text
        body = page.json()
        found += body["data"]
        if not body["has_more"]:
            return found
        after = int(body["next_cursor"])


def test_a_paid_topup_writes_its_events_once(api: Api) -> None:
    order = topup(api, "asha")
    assert verify(api, "asha", order).status_code == 200
    assert verify(api, "asha", order).status_code == 200  # credited once: no second event
    late = webhook(
        api,
        "payment.succeeded",
        provider_order_id=order["provider_order_id"],
        payment_id=order["checkout"]["payment_id"],
        amount=order["amount"],
        currency=order["currency"],
    )
    assert late.status_code == 200, late.text
    types = [e["type"] for e in events_of(api, "asha")]
    assert types == ["payment.updated", "wallet.updated"]
    paid, wallet = events_of(api, "asha")
    assert paid["data"]["status"] == "succeeded" and paid["data"]["order_id"] == order["id"]
    assert wallet["data"]["posted"] == 600


def test_events_pages_and_bad_cursors(api: Api) -> None:
    paid_topup(api, "asha")
    assert_error(
        api.client.get("/events?after=-1", headers=api.user("asha")), 422, "validation_error"
    )
    assert_error(
        api.client.get("/events?after=x", headers=api.user("asha")), 422, "validation_error"
    )
    assert_error(
        api.client.get("/events?limit=0", headers=api.user("asha")), 422, "validation_error"
    )
    assert_error(api.client.get("/events", headers=api.service()), 403, "forbidden")
    assert_error(api.client.get("/events"), 401, "unauthenticated")
    first = api.client.get("/events?limit=1", headers=api.user("asha")).json()
    assert first["has_more"] is True and first["next_cursor"] == str(first["data"][0]["id"])


def test_concurrent_gifts_keep_every_users_sequence_gapless(api: Api) -> None:
    users = [f"u{i}" for i in range(6)]
    for user in users:
        put_user(api, user)
        paid_topup(api, user)
    rng = random.Random(7)
    pairs = [tuple(rng.sample(users, 2)) for _ in range(60)]

    def send(pair: tuple[str, ...]) -> int:
        sender, receiver = pair
        response = api.client.post(
            "/wallet/send-gift",
            json={"receiver_id": receiver, "diamonds": 3},
            headers=api.user(sender),
        )
        return int(response.status_code)

    with ThreadPoolExecutor(12) as pool:
        assert set(pool.map(send, pairs)) == {201}
    seen_ids: set[int] = set()
    for user in users:
        stream = events_of(api, user)
        assert [e["sequence"] for e in stream] == list(range(1, len(stream) + 1))
        ids = [e["id"] for e in stream]
        assert ids == sorted(ids) and seen_ids.isdisjoint(ids)
        seen_ids.update(ids)
        sent = sum(1 for s, _ in pairs if s == user)
        received = sum(1 for _, r in pairs if r == user)
        assert [e["type"] for e in stream].count("gift.sent") == sent
        assert [e["type"] for e in stream].count("gift.received") == received
