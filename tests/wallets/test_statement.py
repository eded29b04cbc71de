"""The wallet's balance, statement (keyset pages, filters), summary and CSV export."""

from __future__ import annotations

import csv
import io

from coffer import ledger
from coffer.wallets.service import earnings_account, wallet_account
from tests.api.harness import Api, assert_error, error_fields
from tests.payments.helpers import assert_books_clean, paid_topup


def gift(api: Api, sender: str, receiver: str, amount: int) -> None:
    with api.database.unit_of_work() as session:
        source = wallet_account(session, sender)
        target = earnings_account(session, receiver)
        ledger.transfer(
            session,
            debit_account_id=source.id,
            credit_account_id=target.id,
            amount=amount,
            type="gift",
            metadata={"description": f"Gift to {receiver}"},
        )


def test_balance_shows_accounts_and_totals(api: Api) -> None:
    paid_topup(api, "alice", package_id="popular")  # 600
    gift(api, "alice", "host", 50)
    balance = api.client.get("/wallet/balance", headers=api.user("alice")).json()
    wallet = next(a for a in balance["accounts"] if a["kind"] == "wallet")
    assert wallet == {
        "kind": "wallet",
        "asset": "DIAMOND",
        "posted": 550,
        "pending_out": 0,
        "pending_in": 0,
        "available": 550,
    }
    assert balance["totals"] == {
        "purchased": 600,
        "gifts_sent": 50,
        "gifts_received": 0,
        "earned": 0,
        "withdrawn": 0,
    }
    host = api.client.get("/wallet/balance", headers=api.user("host")).json()
    assert host["totals"]["gifts_received"] == 50 and host["totals"]["earned"] == 50
    assert_error(api.client.get("/wallet/balance"), 401, "unauthenticated")
    assert_error(api.client.get("/wallet/balance", headers=api.service()), 403, "forbidden")


def test_transactions_page_filter_and_never_show_others(api: Api) -> None:
    paid_topup(api, "alice", package_id="popular")
    for i in range(7):
        gift(api, "alice", "host", 1 + i)
    paid_topup(api, "mallory", package_id="starter")
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.client.get(
            "/wallet/transactions", params=params, headers=api.user("alice")
        ).json()
        seen.extend(page["data"])
        assert page["has_more"] == (page["next_cursor"] is not None)
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert len(seen) == 9  # purchase, bonus, seven gifts
    assert [e["transfer_id"] for e in seen] == sorted(
        (e["transfer_id"] for e in seen), reverse=True
    )
    assert all(e["counterparty_id"] != "mallory" for e in seen)
    newest = seen[0]
    assert (
        newest["type"] == "gift" and newest["amount"] == -7 and newest["balance_after"] == 600 - 28
    )
    assert newest["description"] == "Gift to host" and newest["status"] == "posted"
    gifts = api.client.get(
        "/wallet/transactions", params={"type": "gift"}, headers=api.user("alice")
    ).json()
    assert len(gifts["data"]) == 7
    bought = api.client.get(
        "/wallet/transactions", params={"type": "purchase,bonus"}, headers=api.user("alice")
    ).json()
    assert sorted(e["amount"] for e in bought["data"]) == [100, 500]
    future = api.client.get(
        "/wallet/transactions", params={"from": "2999-01-01"}, headers=api.user("alice")
    ).json()
    assert future["data"] == []


def test_transactions_bad_query(api: Api) -> None:
    headers = api.user("alice")
    for params, field in [
        ({"limit": 0}, "query.limit"),
        ({"limit": 501}, "query.limit"),
        ({"limit": "ten"}, "query.limit"),
        ({"from": "yesterday"}, "query.from"),
        ({"from": "2026-01-01T00:00:00"}, "query.from"),
        ({"cursor": "not-a-cursor!"}, "query.cursor"),
        ({"asset": "diamond"}, "query.asset"),
    ]:
        response = api.client.get("/wallet/transactions", params=params, headers=headers)
        assert field in error_fields(response), (params, response.text)
    response = api.client.get(
        "/wallet/transactions", params={"from": "2026-02-01", "to": "2026-01-01"}, headers=headers
    )
    assert_error(response, 422, "validation_error")


def test_summary_and_csv(api: Api) -> None:
    paid_topup(api, "alice", package_id="popular")
    for i in range(3):
        gift(api, "alice", "host", 10 + i)
    summary = api.client.get("/wallet/summary", headers=api.user("alice")).json()
    by_type = {item["type"]: item for item in summary["by_type"]}
    assert by_type["gift"]["debits"] == 33 and by_type["gift"]["debit_count"] == 3
    assert by_type["purchase"]["credits"] == 500 and by_type["bonus"]["credits"] == 100
    assert summary["totals"] == [{"asset": "DIAMOND", "credits": 600, "debits": 33, "net": 567}]
    response = api.client.get("/wallet/transactions.csv", headers=api.user("alice"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 5
    assert [int(r["amount"]) for r in rows] == [-12, -11, -10, 100, 500] or sorted(
        int(r["amount"]) for r in rows
    ) == [-12, -11, -10, 100, 500]
    assert rows[0]["created_at"].endswith("Z")
    assert_books_clean(api)


def test_payment_orders_are_the_callers_own(api: Api) -> None:
    paid_topup(api, "alice")
    paid_topup(api, "bob")
    mine = api.client.get("/wallet/payment-orders", headers=api.user("alice")).json()
    assert [o["user_id"] for o in mine["data"]] == ["alice"]
    assert mine["data"][0]["checkout"] == {}  # settled: the checkout is no longer shown
