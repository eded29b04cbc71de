"""Freezes through the HTTP app: a frozen wallet receives but spends nothing; every refusal."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from coffer.gifts.tables import gifts
from tests.api.harness import Api, assert_error, bearer, error_fields
from tests.calls.test_calls import available, end, start
from tests.gifts.test_send_gift import earnings, gift, put_user
from tests.ledger.books import state
from tests.payments.helpers import assert_books_clean, paid_topup, wallet_balance


def freeze(api: Api, user_id: str, headers: dict[str, str] | None = None, **body: Any) -> Any:
    body.setdefault("reason", "chargeback pattern under review")
    return api.client.post(
        f"/admin/users/{user_id}/freeze", json=body, headers=headers or api.admin()
    )


def unfreeze(api: Api, user_id: str, headers: dict[str, str] | None = None, **body: Any) -> Any:
    body.setdefault("reason", "review cleared")
    return api.client.post(
        f"/admin/users/{user_id}/unfreeze", json=body, headers=headers or api.admin()
    )


def gift_count(api: Api) -> int:
    with api.database.read() as session:
        return int(session.execute(select(func.count()).select_from(gifts)).scalar_one())


def test_a_frozen_sender_gives_nothing_and_unfreezing_restores(api: Api) -> None:
    put_user(api, "host")
    paid_topup(api, "fan")  # 600
    operator = api.new_key("admin", label="risk desk")
    frozen = freeze(api, "fan", bearer(operator.key), reason="stolen card suspected")
    assert frozen.status_code == 200, frozen.text
    assert frozen.json()["frozen"] is True
    assert frozen.json()["frozen_reason"] == "stolen card suspected"

    before = state(api.database)
    refused = gift(api, "fan", receiver_id="host", diamonds=50)
    assert assert_error(refused, 403, "account_frozen") == {"user_id": "fan"}
    assert state(api.database) == before  # nothing moved
    assert gift_count(api) == 0
    assert wallet_balance(api, "fan") == 600 and earnings(api, "host") == 0

    # The user sees that the wallet is frozen, not the operators' reason; admins see both.
    me = api.client.get("/me", headers=api.user("fan")).json()
    assert me["frozen"] is True and me["frozen_reason"] is None
    seen = api.client.get("/users/fan", headers=api.admin()).json()
    assert seen["frozen_reason"] == "stolen card suspected"
    assert api.client.get("/users/fan", headers=api.service()).json()["frozen_reason"] is None

    thawed = unfreeze(api, "fan", bearer(operator.key))
    assert thawed.status_code == 200, thawed.text
    assert thawed.json()["frozen"] is False and thawed.json()["frozen_reason"] is None
    sent = gift(api, "fan", receiver_id="host", diamonds=50)
    assert sent.status_code == 201, sent.text
    assert wallet_balance(api, "fan") == 550

    log = api.client.get("/admin/audit-log", headers=api.admin()).json()["data"]
    assert [(e["action"], e["actor"], e["reason"]) for e in log] == [
        ("user.unfreeze", operator.record.id, "review cleared"),
        ("user.freeze", operator.record.id, "stolen card suspected"),
    ]
    assert all((e["subject_type"], e["subject_id"]) == ("user", "fan") for e in log)
    assert log[0]["details"] == {"previous_reason": "stolen card suspected"}
    assert_books_clean(api)


def test_a_frozen_host_still_receives_gifts_and_call_earnings(api: Api) -> None:
    put_user(api, "host")
    paid_topup(api, "fan")  # 600
    paid_topup(api, "caller")  # 600
    assert freeze(api, "host").status_code == 200
    sent = gift(api, "fan", receiver_id="host", diamonds=100)
    assert sent.status_code == 201, sent.text
    gifted = sent.json()["gift"]["host_amount"]
    call = start(api, "caller", "host")
    assert call.status_code == 201, call.text
    billed = end(api, call.json()["call"]["id"], 60).json()["call"]
    assert earnings(api, "host") == gifted + billed["host_amount"] > gifted
    # ...but spends nothing: no gift, no call as the caller.
    assert_error(gift(api, "host", receiver_id="fan", diamonds=1), 403, "account_frozen")
    assert_error(start(api, "host", "caller"), 403, "account_frozen")
    assert_books_clean(api)


def test_a_frozen_caller_starts_and_extends_nothing_but_an_open_call_ends(api: Api) -> None:
    put_user(api, "host")
    paid_topup(api, "caller")  # 600; a call holds 300
    call = start(api).json()["call"]
    assert freeze(api, "caller").status_code == 200
    before = state(api.database)
    assert_error(start(api), 403, "account_frozen")
    extended = api.client.post(f"/calls/{call['id']}/extend", headers=api.service())
    assert_error(extended, 403, "account_frozen")
    assert state(api.database) == before
    assert available(api, "caller") == 300
    # The time held before the freeze is billed as usual (ending spends nothing new).
    ended = end(api, call["id"], 30)
    assert ended.status_code == 200 and ended.json()["call"]["cost"] == 30
    assert wallet_balance(api, "caller") == 570
    assert unfreeze(api, "caller").status_code == 200
    assert start(api).status_code == 201
    assert_books_clean(api)


def test_freeze_refusals_change_nothing(api: Api) -> None:
    put_user(api, "u1")
    # No reason, an empty or blank one, one too long, an unknown field: 422.
    no_reason = api.client.post("/admin/users/u1/freeze", json={}, headers=api.admin())
    assert "body.reason" in error_fields(no_reason)
    for body in ({"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}, {"reason": "r", "x": 1}):
        response = api.client.post("/admin/users/u1/freeze", json=body, headers=api.admin())
        assert_error(response, 422, "validation_error")
    assert_error(freeze(api, "ghost"), 404, "not_found")
    assert_error(unfreeze(api, "u1"), 409, "invalid_state")  # not frozen
    for headers in (api.service(), api.user("u1")):
        assert_error(freeze(api, "u1", headers), 403, "forbidden")
        assert_error(unfreeze(api, "u1", headers), 403, "forbidden")
    assert_error(
        api.client.post("/admin/users/u1/freeze", json={"reason": "r"}), 401, "unauthenticated"
    )
    assert api.client.get("/me", headers=api.user("u1")).json()["frozen"] is False
    assert api.client.get("/admin/audit-log", headers=api.admin()).json()["data"] == []

    assert freeze(api, "u1").status_code == 200
    assert_error(freeze(api, "u1", reason="again"), 409, "invalid_state")  # frozen already
    seen = api.client.get("/users/u1", headers=api.admin()).json()
    assert seen["frozen_reason"] == "chargeback pattern under review"  # the first one stands
    log = api.client.get("/admin/audit-log", headers=api.admin()).json()["data"]
    assert [e["action"] for e in log] == ["user.freeze"]
