"""The operators' read API through the HTTP app: the transactions search with each filter and
its summary, CSV, a user's ledger, balances at a past instant, the stats, and the rule that
every /admin route refuses a user token and a service key."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from coffer.api.app import API_PREFIX
from tests.api.harness import Api, assert_error
from tests.gifts.test_send_gift import gift, put_user
from tests.payments.helpers import assert_books_clean, paid_topup


def _all_pages(api: Api, path: str, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = api.client.get(path, params=query, headers=api.admin())
        assert response.status_code == 200, response.text
        body = response.json()
        found += body["data"]
        if not body["has_more"]:
            return found
        cursor = body["next_cursor"]


def _books(api: Api) -> tuple[datetime, datetime]:
    """fan tops up (600 diamonds) and sends two gifts to host; returns instants between."""
    put_user(api, "host")
    paid_topup(api, "fan")
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    assert gift(api, "fan", receiver_id="host", diamonds=100).status_code == 201
    time.sleep(0.01)
    later = datetime.now(UTC)
    time.sleep(0.01)
    assert gift(api, "fan", receiver_id="host", diamonds=50).status_code == 201
    return between, later


def _summary(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[int, int]]:
    sums: dict[tuple[str, str, str], list[int]] = {}
    for row in rows:
        line = sums.setdefault((row["asset"], row["type"], row["status"]), [0, 0])
        line[0] += 1
        line[1] += row["amount"]
    return {k: (v[0], v[1]) for k, v in sums.items()}


def test_transactions_search_filters_pages_and_summarises(api: Api) -> None:
    between, _ = _books(api)
    everything = _all_pages(api, "/admin/transactions", limit=2)
    ids = [t["id"] for t in everything]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids))
    body = api.client.get("/admin/transactions", headers=api.admin()).json()
    summary = {
        (s["asset"], s["type"], s["status"]): (s["count"], s["sum"]) for s in body["summary"]
    }
    assert summary == _summary(everything)

    cases: list[dict[str, Any]] = [
        {"user_id": "host"},
        {"type": "gift"},
        {"type": "gift,fee"},
        {"status": "posted"},
        {"asset": "DIAMOND"},
        {"asset": "INR"},
        {"from": between.isoformat()},
        {"to": between.isoformat()},
        {"user_id": "fan", "from": between.isoformat(), "type": "gift"},
    ]
    for params in cases:
        rows = _all_pages(api, "/admin/transactions", limit=3, **params)
        want = [t for t in everything if _matches(t, params)]
        assert [t["id"] for t in rows] == [t["id"] for t in want], params
        body = api.client.get("/admin/transactions", params=params, headers=api.admin()).json()
        got = {
            (s["asset"], s["type"], s["status"]): (s["count"], s["sum"]) for s in body["summary"]
        }
        assert got == _summary(want), params
    host_rows = _all_pages(api, "/admin/transactions", user_id="host")
    assert host_rows and all(
        "host" in (t["debit"]["owner_id"], t["credit"]["owner_id"]) for t in host_rows
    )
    assert_books_clean(api)


def _matches(t: dict[str, Any], params: dict[str, Any]) -> bool:
    at = datetime.fromisoformat(t["created_at"].replace("Z", "+00:00"))
    user = params.get("user_id")
    return (
        (user is None or user in (t["debit"]["owner_id"], t["credit"]["owner_id"]))
        and ("type" not in params or t["type"] in params["type"].split(","))
        and ("status" not in params or t["status"] == params["status"])
        and ("asset" not in params or t["asset"] == params["asset"])
        and ("from" not in params or at >= datetime.fromisoformat(params["from"]))
        and ("to" not in params or at < datetime.fromisoformat(params["to"]))
    )


def test_transactions_bad_filters_are_422(api: Api) -> None:
    for params in (
        {"status": "lost"},
        {"cursor": "not-a-cursor"},
        {"from": "yesterday"},
        {"from": "2026-02-02", "to": "2026-01-01"},
        {"user_id": "a b"},
        {"asset": "inr"},
        {"limit": 0},
        {"limit": -1},
        {"limit": 1.5},
        {"limit": "ten"},
        {"type": ",".join(f"t{i}" for i in range(21))},
        {"status": ""},
    ):
        response = api.client.get("/admin/transactions", params=params, headers=api.admin())
        assert_error(response, 422, "validation_error")
    response = api.client.get("/admin/transactions.csv?status=lost", headers=api.admin())
    assert_error(response, 422, "validation_error")  # refused before a byte of CSV is sent


def test_user_reads_and_stats_refuse_bad_input(api: Api) -> None:
    _books(api)
    admin = api.admin()
    assert_error(api.client.get("/admin/users/nobody/balance", headers=admin), 404, "not_found")
    assert_error(
        api.client.get("/admin/users/a%20b/ledger", headers=admin), 422, "validation_error"
    )
    assert_error(
        api.client.get("/admin/users/fan/balance?at=2026-13-01", headers=admin),
        422,
        "validation_error",
    )
    assert_error(
        api.client.get("/admin/users/fan/balance?at=2026-12-01T10:00", headers=admin),
        422,
        "validation_error",
    )  # no zone
    for params in ({"from": "soon"}, {"from": "2026-02-02", "to": "2026-01-01"}):
        response = api.client.get("/admin/stats", params=params, headers=admin)
        assert_error(response, 422, "validation_error")
    since = (datetime.now(UTC) - timedelta(days=10)).date().isoformat()
    body = api.client.get("/admin/stats", params={"from": since}, headers=admin).json()
    assert body["gifts"]["from"] == body["from"] and body["gifts"]["to"] == body["to"]


def test_transactions_csv_streams_every_match(api: Api) -> None:
    _books(api)
    response = api.client.get("/admin/transactions.csv?type=gift", headers=api.admin())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    gifts = _all_pages(api, "/admin/transactions", type="gift")
    assert [int(r["id"]) for r in rows] == [t["id"] for t in gifts]
    assert {r["type"] for r in rows} == {"gift"}


def test_user_ledger_and_its_summary(api: Api) -> None:
    _books(api)
    response = api.client.get("/admin/users/fan/ledger", headers=api.admin())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["id"] == "fan"
    summary = body["summary"]
    assert summary["total_purchased"] == 600
    assert summary["current_balance"] == 600 - 150
    assert summary["total_gifts_sent"] == 150  # every share: the host's, and the platform's fee
    assert summary["net_flow"] == (
        summary["total_purchased"]
        + summary["total_gifts_received"]
        - summary["total_gifts_sent"]
        - summary["total_withdrawn"]
    )
    lists = body["ledger"]
    assert len(lists["payment_orders"]) == 1 and len(lists["gifts_sent"]) == 2
    assert lists["gifts_received"] == [] and lists["payouts"] == []
    assert {t["type"] for t in lists["transactions"]["data"]} >= {"purchase", "gift"}
    host = api.client.get("/admin/users/host/ledger", headers=api.admin()).json()
    assert len(host["ledger"]["gifts_received"]) == 2
    assert_error(
        api.client.get("/admin/users/nobody/ledger", headers=api.admin()), 404, "not_found"
    )


def test_a_balance_at_a_past_instant_is_the_sum_of_the_transfers_before_it(api: Api) -> None:
    between, later = _books(api)
    transfers = _all_pages(api, "/admin/transactions", user_id="fan")
    for instant in (between, later, datetime.now(UTC)):
        response = api.client.get(
            "/admin/users/fan/balance", params={"at": instant.isoformat()}, headers=api.admin()
        )
        assert response.status_code == 200, response.text
        wallet = next(a for a in response.json()["accounts"] if a["kind"] == "wallet")
        moved = 0
        for t in transfers:
            at = datetime.fromisoformat(t["created_at"].replace("Z", "+00:00"))
            if at > instant or t["status"] != "posted" or t["asset"] != "DIAMOND":
                continue
            if t["credit"]["owner_id"] == "fan" and t["credit"]["kind"] == "wallet":
                moved += t["amount"]
            if t["debit"]["owner_id"] == "fan" and t["debit"]["kind"] == "wallet":
                moved -= t["amount"]
        assert wallet["balance"] == moved, instant
    early = api.client.get(
        "/admin/users/fan/balance", params={"at": "2000-01-01"}, headers=api.admin()
    ).json()
    assert all(a["balance"] == 0 for a in early["accounts"])
    response = api.client.get("/admin/users/fan/balance?at=soon", headers=api.admin())
    assert_error(response, 422, "validation_error")


def test_stats(api: Api) -> None:
    _books(api)
    response = api.client.get("/admin/stats", headers=api.admin())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["platform"]["total_users"] == 2
    # 600 bought; of the 150 gifted the platform's 20 % fee (30) left circulation.
    assert body["platform"]["diamonds_in_circulation"] == 600 - 30
    assert body["payments"]["count"] == 1 and body["payments"]["by_status"] == {"succeeded": 1}
    assert body["gifts"]["count"] == 2 and body["gifts"]["diamonds"] == 150
    assert body["transactions"]["count"] == sum(s["count"] for s in body["transactions"]["summary"])
    too_long = api.client.get(
        "/admin/stats", params={"from": "2020-01-01", "to": "2026-01-01"}, headers=api.admin()
    )
    assert_error(too_long, 422, "validation_error")


def test_every_admin_route_refuses_a_user_token_and_a_service_key(api: Api) -> None:
    schema = api.client.get(f"http://testserver{API_PREFIX}/openapi.json").json()
    if "paths" not in schema:
        schema = api.client.get("http://testserver/openapi.json").json()
    routes = [
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        if path.removeprefix(API_PREFIX).startswith("/admin")
        for method in operations
    ]
    assert len(routes) > 30
    for method, path in routes:
        url = re.sub(r"\{[^}]+\}", "x1", path.removeprefix(API_PREFIX))
        for headers in (api.user("u1"), api.service()):
            response = api.client.request(method, url, headers=headers, json={})
            assert response.status_code == 403, (method, path, response.status_code)
