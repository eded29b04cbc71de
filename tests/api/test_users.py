"""Users and agencies through the API: profiles, first reference, balances, validation."""

from __future__ import annotations

import pytest

from coffer import ledger, wallets
from coffer.config import DIAMOND
from tests.api.harness import Api, assert_error, error_fields

EMPTY = {"posted": 0, "pending_out": 0, "pending_in": 0, "available": 0}


def test_put_user_makes_the_user_with_its_accounts(api: Api) -> None:
    response = api.client.put("/users/host-1", json={"display_name": "Asha"}, headers=api.service())
    assert response.status_code == 200, response.text
    user = response.json()
    assert user["id"] == "host-1"
    assert user["display_name"] == "Asha"
    assert user["agency_id"] is None
    assert user["created_at"].endswith("Z") or user["created_at"].endswith("+00:00")
    with api.database.read() as session:
        accounts = ledger.accounts_of_owner(session, owner_type="user", owner_id="host-1")
    assert sorted((a.asset, a.kind) for a in accounts) == [
        (DIAMOND, "earnings"),
        (DIAMOND, "wallet"),
    ]
    assert all(a.flags == ledger.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS for a in accounts)


def test_put_user_replaces_the_profile(api: Api) -> None:
    api.client.put(
        "/agencies/stars", json={"name": "Stars", "commission_bps": 1_500}, headers=api.admin()
    )
    first = api.client.put(
        "/users/u1", json={"display_name": "A", "agency_id": "stars"}, headers=api.service()
    ).json()
    assert first["agency_id"] == "stars"
    second = api.client.put("/users/u1", json={"display_name": "B"}, headers=api.service()).json()
    assert second["display_name"] == "B"
    assert second["agency_id"] is None  # PUT: an absent agency_id means none
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] >= first["updated_at"]


def test_put_user_with_unknown_agency_is_422(api: Api) -> None:
    response = api.client.put(
        "/users/u1", json={"display_name": "A", "agency_id": "nobody"}, headers=api.service()
    )
    assert error_fields(response) == {"body.agency_id"}
    # Nothing was made.
    with api.database.read() as session:
        assert wallets.find_user(session, "u1") is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.display_name"),
        ({"display_name": ""}, "body.display_name"),
        ({"display_name": "x" * 129}, "body.display_name"),
        ({"display_name": 5}, "body.display_name"),
        ({"display_name": None}, "body.display_name"),
        ({"display_name": "A", "agency_id": "bad id"}, "body.agency_id"),
        ({"display_name": "A", "agency_id": 3}, "body.agency_id"),
        ({"display_name": "A", "balance": 100}, "body.balance"),
    ],
)
def test_put_user_is_validated(api: Api, body: dict[str, object], field: str) -> None:
    response = api.client.put("/users/u1", json=body, headers=api.service())
    assert field in error_fields(response)


@pytest.mark.parametrize("user_id", ["bad id", "a" * 65, "semi;colon", "ünï"])
def test_bad_user_ids_are_422(api: Api, user_id: str) -> None:
    response = api.client.put(
        f"/users/{user_id}", json={"display_name": "A"}, headers=api.service()
    )
    assert error_fields(response) == {"path.user_id"}


def test_user_ids_use_the_whole_alphabet(api: Api) -> None:
    user_id = "Ab9_.:-z" + "x" * 56
    assert len(user_id) == 64
    response = api.client.put(
        f"/users/{user_id}", json={"display_name": "A"}, headers=api.service()
    )
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user_id


def test_invalid_json_is_400(api: Api) -> None:
    response = api.client.put(
        "/users/u1",
        content=b"{not json",
        headers={**api.service(), "Content-Type": "application/json"},
    )
    assert_error(response, 400, "bad_request")


def test_me_brings_a_new_user_into_being_with_empty_balances(api: Api) -> None:
    response = api.client.get("/me", headers=api.user("fresh"))
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["id"] == "fresh" and me["display_name"] is None
    assert sorted((a["kind"], a["asset"]) for a in me["accounts"]) == [
        ("earnings", DIAMOND),
        ("wallet", DIAMOND),
    ]
    for account in me["accounts"]:
        assert {k: account[k] for k in EMPTY} == EMPTY


def test_me_shows_posted_pending_and_available(api: Api) -> None:
    with api.database.unit_of_work() as session:
        wallet = wallets.wallet_account(session, "u1")
        issuance = wallets.system_account(session, kind="issuance", asset=DIAMOND)
        revenue = wallets.platform_account(session, kind="revenue", asset=DIAMOND)
        ledger.transfer(
            session, debit_account_id=issuance.id, credit_account_id=wallet.id, amount=500,
            type="purchase",
        )  # fmt: skip
        ledger.create_hold(
            session, debit_account_id=wallet.id, credit_account_id=revenue.id, amount=120,
            type="call_charge", timeout_s=600,
        )  # fmt: skip
        ledger.create_hold(
            session, debit_account_id=issuance.id, credit_account_id=wallet.id, amount=30,
            type="bonus", timeout_s=600,
        )  # fmt: skip
    me = api.client.get("/me", headers=api.user("u1")).json()
    (wallet_out,) = [a for a in me["accounts"] if a["kind"] == "wallet"]
    assert wallet_out == {
        "kind": "wallet",
        "asset": DIAMOND,
        "posted": 500,
        "pending_out": 120,
        "pending_in": 30,
        "available": 380,
    }


def test_me_lists_other_assets_once_opened(api: Api) -> None:
    with api.database.unit_of_work() as session:
        wallets.wallet_account(session, "u1", "INR")
    me = api.client.get("/me", headers=api.user("u1")).json()
    assert ("wallet", "INR") in {(a["kind"], a["asset"]) for a in me["accounts"]}


# ---------------------------------------------------------------------------------------------
# Agencies


def test_put_agency_creates_then_replaces(api: Api) -> None:
    made = api.client.put(
        "/agencies/stars", json={"name": "Stars", "commission_bps": 1_000}, headers=api.admin()
    )
    assert made.status_code == 200, made.text
    assert made.json()["commission_bps"] == 1_000 and made.json()["name"] == "Stars"
    changed = api.client.put(
        "/agencies/stars", json={"name": "Stars Inc", "commission_bps": 0}, headers=api.admin()
    ).json()
    assert changed["name"] == "Stars Inc" and changed["commission_bps"] == 0
    assert changed["created_at"] == made.json()["created_at"]


def test_agency_commission_leaves_room_for_the_platform_fee(api: Api) -> None:
    # Default platform fee 2000 bps: the agency may take at most 8000.
    ok = api.client.put(
        "/agencies/a1", json={"name": "A", "commission_bps": 8_000}, headers=api.admin()
    )
    assert ok.status_code == 200, ok.text
    over = api.client.put(
        "/agencies/a1", json={"name": "A", "commission_bps": 8_001}, headers=api.admin()
    )
    assert error_fields(over) == {"body.commission_bps"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "A", "commission_bps": 10.5}, "body.commission_bps"),
        ({"name": "A", "commission_bps": 1000.0}, "body.commission_bps"),
        ({"name": "A", "commission_bps": "1000"}, "body.commission_bps"),
        ({"name": "A", "commission_bps": True}, "body.commission_bps"),
        ({"name": "A", "commission_bps": -1}, "body.commission_bps"),
        ({"name": "A", "commission_bps": 10_001}, "body.commission_bps"),
        ({"name": "A", "commission_bps": 10**40}, "body.commission_bps"),
        ({"name": "A", "commission_bps": None}, "body.commission_bps"),
        ({"name": "A"}, "body.commission_bps"),
        ({"commission_bps": 100}, "body.name"),
        ({"name": "", "commission_bps": 100}, "body.name"),
        ({"name": "x" * 129, "commission_bps": 100}, "body.name"),
        ({"name": ["A"], "commission_bps": 100}, "body.name"),
    ],
)
def test_put_agency_is_validated(api: Api, body: dict[str, object], field: str) -> None:
    response = api.client.put("/agencies/a1", json=body, headers=api.admin())
    assert field in error_fields(response)


def test_bad_agency_id_is_422(api: Api) -> None:
    response = api.client.put(
        "/agencies/no%20spaces", json={"name": "A", "commission_bps": 1}, headers=api.admin()
    )
    assert error_fields(response) == {"path.agency_id"}


def test_validation_errors_name_each_field(api: Api) -> None:
    response = api.client.put(
        "/agencies/a1", json={"name": "", "commission_bps": 2.5}, headers=api.admin()
    )
    details = assert_error(response, 422, "validation_error")
    assert {f["field"] for f in details["fields"]} == {"body.name", "body.commission_bps"}
    assert all(set(f) >= {"field", "message"} for f in details["fields"])
