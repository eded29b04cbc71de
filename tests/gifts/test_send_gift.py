"""Gifts through the HTTP app: the split, the errors that move nothing, and real concurrency."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from coffer.wallets.split import split
from tests.api.harness import Api, assert_error
from tests.ledger.books import state
from tests.payments.helpers import assert_books_clean, paid_topup, wallet_balance


def put_user(api: Api, user_id: str, agency_id: str | None = None) -> None:
    body: dict[str, Any] = {"display_name": user_id}
    if agency_id is not None:
        body["agency_id"] = agency_id
    response = api.client.put(f"/users/{user_id}", json=body, headers=api.service())
    assert response.status_code == 200, response.text


def earnings(api: Api, user_id: str) -> int:
    response = api.client.get("/wallet/balance", headers=api.user(user_id))
    assert response.status_code == 200, response.text
    return sum(a["posted"] for a in response.json()["accounts"] if a["kind"] == "earnings")


def gift(api: Api, sender: str, headers: dict[str, str] | None = None, **body: Any) -> Any:
    return api.client.post(
        "/wallet/send-gift", json=body, headers={**api.user(sender), **(headers or {})}
    )


def test_gift_splits_between_host_agency_and_platform(api: Api) -> None:
    response = api.client.put(
        "/agencies/ag1", json={"name": "Agency", "commission_bps": 1000}, headers=api.admin()
    )
    assert response.status_code == 200, response.text
    put_user(api, "host", agency_id="ag1")
    paid_topup(api, "fan")  # 600 diamonds
    response = gift(api, "fan", receiver_id="host", diamonds=105, message="hi")
    assert response.status_code == 201, response.text
    body = response.json()
    made = body["gift"]
    # 10 % of 105 is 10.5 -> 10 to the agency; 20 % -> 21 to the platform; the host the rest.
    assert (made["agency_amount"], made["platform_amount"], made["host_amount"]) == (10, 21, 74)
    assert body["sender_balance"] == 600 - 105 == wallet_balance(api, "fan")
    assert earnings(api, "host") == 74
    by_type = api.client.get("/wallet/gifts?direction=received", headers=api.user("host"))
    assert [g["id"] for g in by_type.json()["data"]] == [made["id"]]
    sent = api.client.get("/wallet/gifts", headers=api.user("fan")).json()["data"]
    assert [g["message"] for g in sent] == ["hi"]
    admin = api.client.get("/admin/gifts", headers=api.admin()).json()
    assert admin["stats"]["count"] == 1 and admin["stats"]["diamonds"] == 105
    assert admin["stats"]["top_receivers"][0]["receiver_id"] == "host"
    assert_books_clean(api)


def test_gift_by_catalog_type_and_host_without_agency_keeps_its_share(api: Api) -> None:
    put_user(api, "host")
    paid_topup(api, "fan")
    response = gift(api, "fan", receiver_id="host", gift_type="crown")  # 100 diamonds
    assert response.status_code == 201, response.text
    made = response.json()["gift"]
    assert (made["diamonds"], made["agency_amount"], made["platform_amount"]) == (100, 0, 20)
    assert made["host_amount"] == 80 == earnings(api, "host")


def test_gift_errors_move_nothing(api: Api) -> None:
    put_user(api, "host")
    paid_topup(api, "fan")
    before = state(api.database)
    cases = [
        ({"receiver_id": "fan", "diamonds": 5}, 422, "validation_error"),  # to oneself
        ({"receiver_id": "host", "diamonds": 601}, 402, "insufficient_funds"),
        ({"receiver_id": "host", "gift_type": "unicorn"}, 422, "validation_error"),
        ({"receiver_id": "nobody", "diamonds": 5}, 404, "not_found"),
        ({"receiver_id": "host", "diamonds": 5.0}, 422, "validation_error"),
        ({"receiver_id": "host", "diamonds": -5}, 422, "validation_error"),
        ({"receiver_id": "host", "diamonds": 0}, 422, "validation_error"),
        ({"receiver_id": "host", "diamonds": 5, "gift_type": "rose"}, 422, "validation_error"),
        ({"receiver_id": "host"}, 422, "validation_error"),
        ({"receiver_id": "host", "diamonds": "5"}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        assert_error(gift(api, "fan", **body), status, code)
    response = api.client.post(
        "/wallet/send-gift", json={"receiver_id": "fan", "diamonds": 1}, headers=api.user("ghost")
    )
    assert_error(response, 404, "not_found")  # a sender Coffer has never seen
    response = api.client.post(
        "/wallet/send-gift", json={"receiver_id": "host", "diamonds": 1}, headers=api.service()
    )
    assert_error(response, 403, "forbidden")
    after = state(api.database)
    # Planning may open an empty account (the platform's fees account); no money moved.
    assert {i: c for i, c in after.counters.items() if i in before.counters} == before.counters
    assert all(
        after.counters[i] == (0, 0, 0, 0) for i in set(after.counters) - set(before.counters)
    )
    assert (after.transfer_count, after.chain_head, after.holds) == (
        before.transfer_count,
        before.chain_head,
        before.holds,
    )
    assert api.client.get("/admin/gifts", headers=api.admin()).json()["stats"]["count"] == 0
    assert_books_clean(api)


def test_same_idempotency_key_replays_and_other_body_conflicts(api: Api) -> None:
    put_user(api, "host")
    paid_topup(api, "fan")
    key = {"Idempotency-Key": "gift-1"}
    first = gift(api, "fan", key, receiver_id="host", diamonds=10)
    again = gift(api, "fan", key, receiver_id="host", diamonds=10)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.headers["Idempotent-Replayed"] == "true"
    assert_error(
        gift(api, "fan", key, receiver_id="host", diamonds=11), 409, "idempotency_conflict"
    )
    assert wallet_balance(api, "fan") == 590


def test_same_key_in_parallel_moves_once(api: Api) -> None:
    put_user(api, "host")
    paid_topup(api, "fan")
    key = {"Idempotency-Key": "gift-parallel"}
    with ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(lambda _: gift(api, "fan", key, receiver_id="host", diamonds=10), range(16))
        )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["gift"]["id"] for a in answers}) == 1
    assert wallet_balance(api, "fan") == 590 and earnings(api, "host") == 8
    assert_books_clean(api)


def test_thirty_parallel_gifts_with_funds_for_fifteen(api: Api) -> None:
    put_user(api, "host")
    paid_topup(api, "fan", diamonds=150)  # funds for 15 gifts of 10
    start = threading.Barrier(30)

    def one(_: int) -> int:
        start.wait()
        return int(gift(api, "fan", receiver_id="host", diamonds=10).status_code)

    with ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(one, range(30)))
    assert statuses.count(201) == 15 and statuses.count(402) == 15, statuses
    assert wallet_balance(api, "fan") == 0
    admin = api.client.get("/admin/gifts", headers=api.admin()).json()
    assert admin["stats"]["diamonds"] == 150
    shares = sum(
        g["host_amount"] + g["agency_amount"] + g["platform_amount"] for g in admin["data"]
    )
    assert shares == 150
    assert_books_clean(api)


def test_gift_events_have_gapless_sequences_and_stay_private(api: Api) -> None:
    put_user(api, "host")
    put_user(api, "other")
    paid_topup(api, "fan")
    for _ in range(3):
        assert gift(api, "fan", receiver_id="host", diamonds=5).status_code == 201
    fan = api.client.get("/events?limit=500", headers=api.user("fan")).json()["data"]
    host = api.client.get("/events?limit=500", headers=api.user("host")).json()["data"]
    other = api.client.get("/events", headers=api.user("other")).json()["data"]
    assert other == []
    for stream in (fan, host):
        assert [e["sequence"] for e in stream] == list(range(1, len(stream) + 1))
        assert [e["id"] for e in stream] == sorted(e["id"] for e in stream)
    assert [e["type"] for e in host].count("gift.received") == 3
    assert {e["type"] for e in fan} >= {"gift.sent", "wallet.updated"}
    page = api.client.get(f"/events?after={fan[0]['id']}&limit=1", headers=api.user("fan")).json()
    assert page["data"][0]["id"] == fan[1]["id"] and page["has_more"] is True


@given(
    amount=st.integers(min_value=1, max_value=10**12),
    fee_bps=st.integers(min_value=0, max_value=10_000),
    data=st.data(),
)
def test_split_adds_up_and_rounds_shares_down(amount: int, fee_bps: int, data: Any) -> None:
    commission = data.draw(st.none() | st.integers(min_value=0, max_value=10_000 - fee_bps))
    made = split(amount, commission_bps=commission, fee_bps=fee_bps)
    assert made.host_amount + made.agency_amount + made.platform_amount == amount
    assert made.platform_amount == amount * fee_bps // 10_000
    assert made.agency_amount == (0 if commission is None else amount * commission // 10_000)
    assert made.host_amount >= 0
