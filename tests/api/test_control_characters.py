"""Issue 7 item 6: bad input never reaches the driver.

A control character in a path, a query value, a JSON body string or the Idempotency-Key is a 422
naming the field, on SQLite and PostgreSQL alike (before: a 500 on PostgreSQL, accepted on
SQLite), the connection stays open for the next request, and no provider's own words reach an
error body.
"""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from coffer.db import Database
from coffer.wallets.tables import users
from tests.api.harness import Api, assert_error, error_fields, make_api
from tests.api.live import local_port, serve_live
from tests.fakes.fixtures import stripe_fake  # noqa: F401 - the Stripe fake fixture
from tests.fakes.stripe_api import StripeFake
from tests.payments.helpers import paid_topup, topup


def _send(
    api: Api, path: str, body: str, headers: dict[str, str], *, method: str = "POST"
) -> httpx.Response:
    """Send `body` as written: JSON escapes such as \\u0000 reach the server untouched."""
    return api.client.request(
        method,
        path,
        content=body.encode(),
        headers={**headers, "Content-Type": "application/json"},
    )


@pytest.mark.parametrize(
    "path",
    [
        "/admin/payment-orders/pay%00x",
        "/admin/payment-orders/pay%01x",
        "/admin/payment-orders/pay%7Fx",
        "/admin/users/u%00/ledger",
    ],
)
def test_item6_control_character_in_a_path_is_422(api: Api, path: str) -> None:
    assert error_fields(api.client.get(path, headers=api.admin())) == {"path"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("user_id=a%00b", "query.user_id"),
        ("status=succeeded&cursor=%00", "query.cursor"),
        ("user_id=a%0Ab", "query.user_id"),  # no line breaks in a query value either
        ("us%00er=1", "query"),
    ],
)
def test_item6_control_character_in_a_query_value_is_422(api: Api, query: str, field: str) -> None:
    response = api.client.get(f"/admin/payment-orders?{query}", headers=api.admin())
    assert error_fields(response) == {field}


def test_item6_control_characters_in_json_bodies_are_422_and_change_nothing(api: Api) -> None:
    order = topup(api, "ana")
    user = api.user("ana")
    verify = _send(
        api,
        "/wallet/verify",
        json.dumps({"order_id": order["id"] + "\u0000", "payment_id": "p", "signature": "s"}),
        user,
    )
    assert error_fields(verify) == {"body.order_id"}
    token = _send(api, "/auth/token", '{"user_id": "u\\u0000", "ttl_s": 60}', api.service())
    assert error_fields(token) == {"body.user_id"}
    for written in ('"Bo\\u001b[2J"', '"Bo\x7f"', '"Bo\\ud800"', '"Bo\\b"'):
        named = _send(
            api, "/users/bo", f'{{"display_name": {written}}}', api.service(), method="PUT"
        )
        assert error_fields(named) == {"body.display_name"}, written
    with api.database.read() as session:
        assert session.execute(select(users.c.id).where(users.c.id == "bo")).first() is None


def test_item6_a_reason_may_hold_line_breaks_but_no_nul(api: Api) -> None:
    order = paid_topup(api, "cy")
    path = f"/admin/payment-orders/{order['id']}/refund"
    refused = _send(api, path, '{"amount": 100, "reason": "dup\\u0000licate"}', api.admin())
    assert error_fields(refused) == {"body.reason"}
    made = _send(api, path, '{"amount": 100, "reason": "line one\\nline\\ttwo"}', api.admin())
    assert made.status_code == 201, made.text
    assert made.json()["refund"]["reason"] == "line one\nline\ttwo"
    # An escaped backslash is not an escape: "\\u0000" is six printable characters.
    literal = _send(
        api, "/users/di", '{"display_name": "C:\\\\u0000"}', api.service(), method="PUT"
    )
    assert literal.status_code == 200, literal.text
    assert literal.json()["display_name"] == "C:\\u0000"


def test_item6_control_character_in_the_idempotency_key_is_422(api: Api) -> None:
    response = api.client.post(
        "/wallet/topup",
        json={"package_id": "popular"},
        headers={**api.user("ed"), "Idempotency-Key": "key\x01one"},
    )
    assert error_fields(response) == {"header.Idempotency-Key"}


def test_item6_the_connection_stays_open_after_a_refusal(db: Database) -> None:
    with make_api(db) as api, serve_live(api.coffer.app) as base_url:
        admin = api.admin()
        with httpx.Client(base_url=f"{base_url}/api/v1", headers=admin) as client:
            first = client.get("/healthz")
            assert first.status_code == 200
            refusals = [
                client.get("/admin/payment-orders/pay%00x"),
                client.get("/admin/payment-orders", params={"user_id": "a\x00b"}),
                client.post("/auth/token", content=b'{"user_id": "u\\u0000"}',
                            headers={"Content-Type": "application/json"}),
                client.post("/admin/payment-orders/pay_x/refund",
                            content=b'{"reason": "r\\u0000"}',
                            headers={"Content-Type": "application/json"}),
            ]  # fmt: skip
            for response in refusals:
                assert_error(response, 422, "validation_error")
            after = client.get("/healthz")
            assert after.status_code == 200
            ports = {local_port(r) for r in [first, *refusals, after]}
            assert len(ports) == 1, "every answer came on the one keep-alive connection"


def test_item6_no_provider_words_reach_an_error_body(
    db: Database,
    stripe_fake: StripeFake,  # noqa: F811 - the fixture imported above
) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        stripe_fake.fail_next(
            402,
            body={
                "error": {
                    "type": "card_error",
                    "code": "card_declined",
                    "message": "Your card ending 4242 was declined (req_secret123).",
                }
            },
        )
        response = api.client.post(
            "/wallet/topup",
            json={"package_id": "popular", "provider": "stripe"},
            headers=api.user("fay"),
        )
        details = assert_error(response, 502, "provider_rejected")
        assert details["provider_code"] == "card_declined"
        assert "4242" not in response.text and "req_secret123" not in response.text


def test_item6_engines_hide_bound_parameters(db: Database) -> None:
    with pytest.raises(DBAPIError) as raised, db.engine.connect() as conn:
        conn.execute(text("SELECT 1 / (CAST(:secret AS INTEGER) - 7) FROM nowhere"), {"secret": 7})
    assert "parameters hidden" in str(raised.value)
    assert "'secret': 7" not in str(raised.value)
