"""The app's edges: health, the OpenAPI document, and one error shape for everything."""

from __future__ import annotations

from tests.api.harness import Api, assert_error


def test_healthz_and_openapi(api: Api) -> None:
    assert api.client.get("/healthz").json()["status"] == "ok"
    root = api.client.get("http://testserver/healthz")
    assert root.status_code == 200
    spec = api.client.get("http://testserver/openapi.json").json()
    paths = set(spec["paths"])
    for path in (
        "/api/v1/wallet/topup",
        "/api/v1/wallet/verify",
        "/api/v1/wallet/balance",
        "/api/v1/wallet/transactions",
        "/api/v1/wallet/transactions.csv",
        "/api/v1/wallet/summary",
        "/api/v1/wallet/payment-orders",
        "/api/v1/webhooks/{provider}",
        "/api/v1/admin/payment-orders/{order_id}/refund",
        "/api/v1/admin/ledger/verify",
        "/api/v1/auth/token",
        "/api/v1/users/{user_id}",
        "/api/v1/agencies/{agency_id}",
        "/api/v1/me",
        "/api/v1/config/public",
        "/api/v1/packages",
        "/api/v1/gifts/catalog",
        "/api/v1/plans",
    ):
        assert path in paths, path


def test_unknown_paths_methods_and_bodies_get_the_error_shape(api: Api) -> None:
    assert_error(api.client.get("/nowhere"), 404, "not_found")
    assert_error(
        api.client.delete("/wallet/balance", headers=api.user("u")), 405, "method_not_allowed"
    )
    broken = api.client.post(
        "/wallet/topup",
        content=b"{not json",
        headers={**api.user("u"), "Content-Type": "application/json"},
    )
    assert_error(broken, 400, "bad_request")
    for response in (
        api.client.get("/nowhere"),
        api.client.post("/wallet/topup", json={"diamonds": 1.5}, headers=api.user("u")),
    ):
        text = response.text
        assert "Traceback" not in text and "sqlalchemy" not in text.lower()
