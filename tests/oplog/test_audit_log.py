"""The operator audit trail through the HTTP app: every operator action, who, when and why."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from coffer.oplog.tables import operator_actions
from tests.api.harness import Api, assert_error, bearer
from tests.payments.helpers import assert_books_clean, paid_topup


def log(api: Api, **params: Any) -> dict[str, Any]:
    response = api.client.get("/admin/audit-log", params=params, headers=api.admin())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"data", "has_more", "next_cursor"}
    return body


def entries(api: Api) -> int:
    with api.database.read() as session:
        return int(session.execute(select(func.count()).select_from(operator_actions)).scalar_one())


def test_an_admin_refund_is_audited_with_its_actor_and_reason(api: Api) -> None:
    order = paid_topup(api, "alice", package_id="popular")
    operator = api.new_key("admin", label="support")
    response = api.client.post(
        f"/admin/payment-orders/{order['id']}/refund",
        json={"amount": 10_000, "reason": "double charged"},
        headers={**bearer(operator.key), "Idempotency-Key": "refund-1"},
    )
    assert response.status_code == 201, response.text
    refund = response.json()["refund"]
    (entry,) = log(api, action="payment.refund")["data"]
    assert entry["actor"] == operator.record.id and entry["reason"] == "double charged"
    assert (entry["subject_type"], entry["subject_id"]) == ("payment_order", order["id"])
    assert entry["details"]["refund_id"] == refund["id"]
    assert entry["details"]["amount"] == 10_000
    # The same request again replays the refund and records nothing more.
    again = api.client.post(
        f"/admin/payment-orders/{order['id']}/refund",
        json={"amount": 10_000, "reason": "double charged"},
        headers={**bearer(operator.key), "Idempotency-Key": "refund-1"},
    )
    assert again.status_code == 201 and again.json()["refund"]["id"] == refund["id"]
    assert entries(api) == 1
    # A refund refused for bad input records nothing.
    refused = api.client.post(
        f"/admin/payment-orders/{order['id']}/refund",
        json={"amount": 10**9, "reason": "too much"},
        headers=api.admin(),
    )
    assert_error(refused, 422, "validation_error")
    assert entries(api) == 1
    assert_books_clean(api)


def test_a_call_rate_change_is_audited_with_the_rate_it_replaced(api: Api) -> None:
    operator = api.new_key("admin")
    for rate, reason in ((90, "launch pricing"), (120, None)):
        response = api.client.put(
            "/admin/settings/call-rate",
            json={"rate_per_minute": rate, "asset": "DIAMOND"}
            | ({"reason": reason} if reason else {}),
            headers=bearer(operator.key),
        )
        assert response.status_code == 200, response.text
    newest, oldest = log(api, action="call_rate.set")["data"]
    assert oldest["reason"] == "launch pricing" and newest["reason"] is None
    assert oldest["details"] == {"asset": "DIAMOND", "rate_per_minute": 90}
    assert newest["details"]["previous"] == {"asset": "DIAMOND", "rate_per_minute": 90}
    assert newest["subject_id"] == "*" and newest["actor"] == operator.record.id
    # A refused change (an unknown asset) records nothing.
    refused = api.client.put(
        "/admin/settings/call-rate",
        json={"rate_per_minute": 1, "asset": "NOPE", "reason": "x"},
        headers=api.admin(),
    )
    assert_error(refused, 409, "invalid_state")
    long_reason = api.client.put(
        "/admin/settings/call-rate",
        json={"rate_per_minute": 1, "asset": "DIAMOND", "reason": "x" * 256},
        headers=api.admin(),
    )
    assert_error(long_reason, 422, "validation_error")
    assert entries(api) == 2


def test_an_agency_change_is_audited(api: Api) -> None:
    for bps in (1000, 1500):
        response = api.client.put(
            "/agencies/ag1", json={"name": "Agency", "commission_bps": bps}, headers=api.admin()
        )
        assert response.status_code == 200, response.text
    newest, oldest = log(api, action="agency.put")["data"]
    assert oldest["details"] == {"name": "Agency", "commission_bps": 1000}
    assert newest["details"]["previous"] == {"name": "Agency", "commission_bps": 1000}
    assert newest["subject_id"] == "ag1"


def test_filters_and_keyset_pages(api: Api) -> None:
    first, second = api.new_key("admin"), api.new_key("admin")
    for i, key in enumerate((first, second, first, second, first)):
        api.client.put(
            "/admin/settings/call-rate",
            json={"rate_per_minute": 60 + i, "asset": "DIAMOND", "host_id": f"h{i}"},
            headers=bearer(key.key),
        )
    api.client.put(
        "/agencies/ag1", json={"name": "A", "commission_bps": 0}, headers=bearer(second.key)
    )
    everything = log(api)["data"]
    assert len(everything) == 6
    assert [e["created_at"] for e in everything] == sorted(
        (e["created_at"] for e in everything), reverse=True
    )
    by_first = log(api, actor=first.record.id)["data"]
    assert [e["subject_id"] for e in by_first] == ["h4", "h2", "h0"]
    both = log(api, actor=second.record.id, action="call_rate.set")["data"]
    assert [e["subject_id"] for e in both] == ["h3", "h1"]
    assert log(api, action="kyc.approve")["data"] == []

    page = log(api, limit=4)
    assert page["has_more"] and len(page["data"]) == 4
    rest = log(api, limit=4, cursor=page["next_cursor"])
    assert not rest["has_more"] and rest["next_cursor"] is None
    assert [e["id"] for e in page["data"] + rest["data"]] == [e["id"] for e in everything]


def test_roles_and_bad_filters(api: Api) -> None:
    for headers in (api.service(), api.user("u1")):
        assert_error(api.client.get("/admin/audit-log", headers=headers), 403, "forbidden")
    assert_error(api.client.get("/admin/audit-log"), 401, "unauthenticated")
    for params in (
        {"action": "Not An Action"},
        {"actor": "x" * 65},
        {"limit": 0},
        {"limit": 501},
        {"cursor": "%%%"},
    ):
        response = api.client.get("/admin/audit-log", params=params, headers=api.admin())
        assert_error(response, 422, "validation_error")
