"""Factories for payment tests: top up through the mock, deliver mock webhooks, check books."""

from __future__ import annotations

from typing import Any

from coffer.audit.verify import verify_books
from coffer.providers.mock import MockProvider
from tests.api.harness import Api


def mock_provider(api: Api) -> MockProvider:
    provider = api.coffer.app.state.providers.get("mock")
    assert isinstance(provider, MockProvider)
    return provider


def topup(api: Api, user_id: str, **body: Any) -> dict[str, Any]:
    body = body or {"package_id": "popular"}
    response = api.client.post("/wallet/topup", json=body, headers=api.user(user_id))
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()["order"]
    return order


def verify(api: Api, user_id: str, order: dict[str, Any], **override: str) -> Any:
    body = {
        "order_id": order["id"],
        "payment_id": order["checkout"]["payment_id"],
        "signature": order["checkout"]["signature"],
        **override,
    }
    return api.client.post("/wallet/verify", json=body, headers=api.user(user_id))


def paid_topup(api: Api, user_id: str, **body: Any) -> dict[str, Any]:
    order = topup(api, user_id, **body)
    response = verify(api, user_id, order)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["order"]
    return result


def webhook(api: Api, kind: str, **fields: Any) -> Any:
    body, headers = mock_provider(api).build_webhook(kind, **fields)
    return api.client.post("/webhooks/mock", content=body, headers=headers)


def wallet_balance(api: Api, user_id: str) -> int:
    response = api.client.get("/wallet/balance", headers=api.user(user_id))
    assert response.status_code == 200, response.text
    accounts = response.json()["accounts"]
    return sum(a["posted"] for a in accounts if a["kind"] == "wallet" and a["asset"] == "DIAMOND")


def assert_books_clean(api: Api) -> None:
    report = verify_books(api.database)
    assert report.ok, report.as_dict()
