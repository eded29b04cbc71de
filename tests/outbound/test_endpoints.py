"""The admin webhook routes: who may call them, every filter, bad input, and SSRF refusals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from coffer.db import Database
from coffer.oplog.tables import operator_actions
from coffer.outbound import urls
from coffer.outbound.tables import endpoints
from coffer.outbound.urls import RefusedUrl, UrlPolicy
from tests.api.harness import Api, assert_error, error_fields, make_api
from tests.outbound.helpers import audit, deliver, deliveries, register, use_clock
from tests.outbound.receiver import Receiver
from tests.payments.helpers import paid_topup

ENDPOINT = "we_00000000000000000000"
DELIVERY = "whd_00000000000000000000"
ROUTES = (
    ("POST", "/admin/webhook-endpoints", {"url": "http://127.0.0.1/x", "events": ["*"]}),
    ("GET", "/admin/webhook-endpoints", None),
    ("POST", f"/admin/webhook-endpoints/{ENDPOINT}/rotate-secret", {}),
    (
        "POST",
        f"/admin/webhook-endpoints/{ENDPOINT}/recover",
        {"since": "2026-01-01T00:00:00Z", "reason": "x"},
    ),
    ("GET", "/admin/webhook-deliveries", None),
    ("POST", f"/admin/webhook-deliveries/{DELIVERY}/resend", {"reason": "x"}),
)


def call(api: Api, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    return api.client.request(method, path, json=body, headers=headers)


def count_endpoints(database: Database) -> int:
    with database.read() as session:
        return int(session.execute(select(func.count()).select_from(endpoints)).scalar_one())


def test_only_an_admin_key_may_call_them(api: Api) -> None:
    for method, path, body in ROUTES:
        for headers in (api.user("u1"), api.service()):
            assert_error(call(api, method, path, body, headers), 403, "forbidden")
        assert_error(call(api, method, path, body, {}), 401, "unauthenticated")
    assert count_endpoints(api.database) == 0


def test_register_list_and_filter_endpoints(api: Api) -> None:
    first = register(api, "http://127.0.0.1:1/a", ["gift.received", "gift.sent", "gift.sent"])
    assert first["events"] == ["gift.received", "gift.sent"]  # sorted, once each
    assert first["status"] == "enabled" and first["disabled_reason"] is None
    second = register(api, "https://hooks.example.com/b", ["*"], reason="the host app")
    third = register(api, "http://localhost:8080/c", ["kyc.updated"])
    (entry, *_) = audit(api, "webhook_endpoint.create")
    assert entry["subject_id"] == third["id"]
    created = {e["subject_id"]: e for e in audit(api, "webhook_endpoint.create")}
    assert created[second["id"]]["reason"] == "the host app"
    assert created[second["id"]]["details"] == {
        "url": "https://hooks.example.com/b",
        "events": ["*"],
    }
    # Newest first, keyset pages, no secret in a list.
    response = api.client.get("/admin/webhook-endpoints?limit=2", headers=api.admin())
    page = response.json()
    assert [e["id"] for e in page["data"]] == [third["id"], second["id"]] and page["has_more"]
    assert all("secret" not in e for e in page["data"])
    rest = api.client.get(
        "/admin/webhook-endpoints", params={"cursor": page["next_cursor"]}, headers=api.admin()
    ).json()
    assert [e["id"] for e in rest["data"]] == [first["id"]] and not rest["has_more"]
    enabled = api.client.get("/admin/webhook-endpoints?status=enabled", headers=api.admin())
    assert len(enabled.json()["data"]) == 3
    disabled = api.client.get("/admin/webhook-endpoints?status=disabled", headers=api.admin())
    assert disabled.json()["data"] == []
    for params in ({"status": "gone"}, {"limit": 0}, {"limit": 501}, {"cursor": "%%%"}):
        response = api.client.get("/admin/webhook-endpoints", params=params, headers=api.admin())
        assert_error(response, 422, "validation_error")


def test_bad_endpoints_are_refused_and_change_nothing(api: Api) -> None:
    for body, field in (
        ({"url": "http://127.0.0.1/x", "events": ["nope.never"]}, "body.events"),
        ({"url": "http://127.0.0.1/x", "events": []}, "body.events"),
        ({"url": "http://127.0.0.1/x", "events": ["*"] * 33}, "body.events"),
        ({"url": "http://127.0.0.1/x"}, "body.events"),
        ({"url": "ftp://127.0.0.1/x", "events": ["*"]}, "body.url"),
        ({"url": "not a url", "events": ["*"]}, "body.url"),
        ({"url": "http://user:pw@127.0.0.1/x", "events": ["*"]}, "body.url"),
        ({"url": "http://127.0.0.1/" + "x" * 2048, "events": ["*"]}, "body.url"),
        ({"url": "http://127.0.0.1/x", "events": ["*"], "reason": "x" * 501}, "body.reason"),
        ({"url": "http://127.0.0.1/x", "events": ["*"], "secret": "mine"}, "body.secret"),
    ):
        response = api.client.post("/admin/webhook-endpoints", json=body, headers=api.admin())
        assert field in error_fields(response), (body, response.text)
    assert count_endpoints(api.database) == 0
    assert audit(api, "webhook_endpoint.create") == []


def test_unknown_ids_and_bad_bodies_on_operator_actions(api: Api) -> None:
    clock = use_clock(api)
    hook = register(api, "http://127.0.0.1:1/a", ["*"])
    for path, body in (
        (f"/admin/webhook-endpoints/{ENDPOINT}/rotate-secret", {}),
        (f"/admin/webhook-endpoints/{ENDPOINT}/recover", {"since": "2026-01-01T00:00:00Z"}),
    ):
        response = api.client.post(path, json={**body, "reason": "x"}, headers=api.admin())
        assert_error(response, 404, "not_found")
    recover = f"/admin/webhook-endpoints/{hook['id']}/recover"
    tomorrow = (clock() + timedelta(days=1)).isoformat()
    for body in (
        {"since": "2026-01-01T00:00:00Z"},  # no reason
        {"since": "2026-01-01T00:00:00Z", "reason": ""},
        {"since": "2026-01-01T00:00:00", "reason": "x"},  # no time zone
        {"since": "yesterday", "reason": "x"},
        {"reason": "x"},
        {"since": tomorrow, "reason": "in the future"},
    ):
        response = api.client.post(recover, json=body, headers=api.admin())
        assert_error(response, 422, "validation_error")
    for path in (
        "/admin/webhook-endpoints/not-an-id/rotate-secret",
        "/admin/webhook-deliveries/../resend",
    ):
        response = api.client.post(path, json={"reason": "x"}, headers=api.admin())
        assert response.status_code in (404, 422)
    assert audit(api, "webhook_endpoint.recover") == []
    assert audit(api, "webhook_endpoint.rotate_secret") == []
    # A rotation needs no body; the reason is optional there.
    response = api.client.post(
        f"/admin/webhook-endpoints/{hook['id']}/rotate-secret", headers=api.admin()
    )
    assert response.status_code == 200, response.text
    (entry,) = audit(api, "webhook_endpoint.rotate_secret")
    assert entry["reason"] is None


def test_filter_deliveries_by_endpoint_and_status(api: Api) -> None:
    clock = use_clock(api)
    with Receiver() as receiver:
        good = register(api, receiver.url, ["payment.updated"])
        bad = register(api, "http://127.0.0.1:9/closed", ["payment.updated"])
        paid_topup(api, "alice")
        paid_topup(api, "bob")
        assert deliver(api, clock) == 4
    everything = deliveries(api)
    assert len(everything) == 4
    assert [d["created_at"] for d in everything] == sorted(
        (d["created_at"] for d in everything), reverse=True
    )
    ok = deliveries(api, endpoint_id=good["id"])
    assert len(ok) == 2 and {d["status"] for d in ok} == {"succeeded"}
    waiting = deliveries(api, endpoint_id=bad["id"], status="pending")
    assert len(waiting) == 2 and all(d["last_status_code"] is None for d in waiting)
    assert deliveries(api, endpoint_id=bad["id"], status="succeeded") == []
    assert {d["endpoint_id"] for d in deliveries(api, status="succeeded")} == {good["id"]}
    assert deliveries(api, status="failed") == []
    assert deliveries(api, endpoint_id=ENDPOINT) == []
    page = api.client.get("/admin/webhook-deliveries?limit=3", headers=api.admin()).json()
    assert page["has_more"] and len(page["data"]) == 3
    rest = api.client.get(
        "/admin/webhook-deliveries", params={"cursor": page["next_cursor"]}, headers=api.admin()
    ).json()
    assert not rest["has_more"]
    assert [d["id"] for d in page["data"] + rest["data"]] == [d["id"] for d in everything]
    for params in (
        {"status": "lost"},
        {"endpoint_id": "x" * 40},
        {"endpoint_id": "we_bad"},
        {"cursor": "%%%"},
    ):
        response = api.client.get("/admin/webhook-deliveries", params=params, headers=api.admin())
        assert_error(response, 422, "validation_error")


PRODUCTION_REFUSED = (
    "http://hooks.example.com/x",  # not https
    "https://127.0.0.1/x",
    "https://localhost/x",
    "https://10.1.2.3/x",
    "https://192.168.0.10/x",
    "https://172.16.0.1/x",
    "https://169.254.169.254/latest/meta-data",  # the cloud metadata service
    "https://[::1]/x",
    "https://[fe80::1]/x",
    "https://[::ffff:127.0.0.1]/x",
    "https://0.0.0.0/x",
    "https://100.64.0.1/x",  # carrier-grade NAT
    "https://no-such-host.invalid/x",
)


def test_production_refuses_urls_that_reach_inside(db: Database) -> None:
    with make_api(db, env="production") as api:
        for url in PRODUCTION_REFUSED:
            response = api.client.post(
                "/admin/webhook-endpoints", json={"url": url, "events": ["*"]}, headers=api.admin()
            )
            assert "body.url" in error_fields(response), url
        assert count_endpoints(db) == 0
        # A public address is fine (an IP literal: the test needs no DNS).
        register(api, "https://93.184.215.14/hooks")
    with make_api(db, env="production", webhook_allow_private=True) as api:
        register(api, "https://127.0.0.1:8443/hooks")
        register(api, "https://10.1.2.3/hooks")
        response = api.client.post(
            "/admin/webhook-endpoints",
            json={"url": "http://10.1.2.3/hooks", "events": ["*"]},
            headers=api.admin(),
        )
        assert "body.url" in error_fields(response)  # https stays required
    assert count_endpoints(db) == 3


def test_development_takes_any_http_url_loopback_included() -> None:
    policy = UrlPolicy.of(env="development", allow_private=False)
    for url in ("http://127.0.0.1:8000/x", "http://localhost/x", "https://10.0.0.1/x"):
        assert urls.check(url, policy) == url


def test_a_name_that_resolves_privately_later_is_refused_when_sending(api: Api) -> None:
    """DNS rebinding: public at registration, private at the attempt. The attempt is refused,
    logged, and retried on the schedule (the name may be fixed)."""
    clock = use_clock(api)
    register(api, "https://127.0.0.1:1/x", ["payment.updated"])  # registered in development
    paid_topup(api, "alice")
    production = UrlPolicy.of(env="production", allow_private=False)
    assert deliver(api, clock, policy=production) == 1
    (delivery,) = deliveries(api)
    (attempt,) = delivery["attempt_log"]
    assert attempt["status_code"] is None and attempt["error"].startswith("refused:")
    assert delivery["status"] == "pending"

    public = {"public.example": ["93.184.215.14"], "rebound.example": ["93.184.215.14", "10.0.0.7"]}
    assert urls.check("https://public.example/x", production, resolve=lambda h, p: public[h])
    with pytest.raises(RefusedUrl, match="private"):
        urls.check("https://rebound.example/x", production, resolve=lambda h, p: public[h])


def test_recover_and_rotate_are_audited_with_who_did_them(api: Api) -> None:
    operator = api.new_key("admin", label="ops")
    hook = register(api, "http://127.0.0.1:1/a", ["*"])
    response = api.client.post(
        f"/admin/webhook-endpoints/{hook['id']}/recover",
        json={"since": "2026-01-01T00:00:00Z", "reason": "just in case"},
        headers={"Authorization": f"Bearer {operator.key}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["requeued"] == 0
    (entry,) = audit(api, "webhook_endpoint.recover")
    assert entry["actor"] == operator.record.id and entry["details"]["was"] == "enabled"
    with api.database.read() as session:
        actions = session.execute(select(operator_actions.c.action)).scalars().all()
    assert sorted(actions) == ["webhook_endpoint.create", "webhook_endpoint.recover"]
