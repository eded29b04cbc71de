"""`Idempotency-Key` end to end, through a small money-moving route added to the real app.

`POST /api/v1/test/grants` credits a user's wallet from issuance; `POST /api/v1/test/spends`
debits it (402 when short). Each answer carries a random nonce, so a replay that re-ran the work
could not return the same bytes.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from coffer import ledger, wallets
from coffer.api.app import API_PREFIX
from coffer.api.deps import AnyPrincipal
from coffer.api.idempotent import REPLAYED_HEADER, Idempotent
from coffer.config import DIAMOND
from coffer.db import Database
from coffer.ledger.tables import transfers
from tests.api.harness import Api, assert_error, error_fields, make_api

THREADS = 16


class MoveIn(BaseModel):
    user_id: str
    amount: Annotated[int, Field(strict=True, gt=0, le=10**9)]
    note: str = ""


def _grant(session: Session, body: MoveIn) -> dict[str, Any]:
    issuance = wallets.system_account(session, kind="issuance", asset=DIAMOND)
    wallet = wallets.wallet_account(session, body.user_id)
    made = ledger.transfer(
        session,
        debit_account_id=issuance.id,
        credit_account_id=wallet.id,
        amount=body.amount,
        type="bonus",
    )
    balance = ledger.get_account(session, wallet.id).balance
    return {"transfer_id": made.id, "balance": balance, "nonce": secrets.token_hex(8)}


def _spend(session: Session, body: MoveIn) -> dict[str, Any]:
    wallet = wallets.wallet_account(session, body.user_id)
    revenue = wallets.platform_account(session, kind="revenue", asset=DIAMOND)
    made = ledger.transfer(
        session,
        debit_account_id=wallet.id,
        credit_account_id=revenue.id,
        amount=body.amount,
        type="adjustment",
    )
    return {"transfer_id": made.id, "nonce": secrets.token_hex(8)}


def money_router() -> APIRouter:
    router = APIRouter()

    @router.post("/test/grants", status_code=201)
    def grant(body: MoveIn, _: AnyPrincipal, idem: Idempotent) -> Response:
        return idem.run(status_code=201, work=lambda session: _grant(session, body))

    @router.post("/test/spends", status_code=200)
    def spend(body: MoveIn, _: AnyPrincipal, idem: Idempotent) -> Response:
        return idem.run(status_code=200, work=lambda session: _spend(session, body))

    @router.post("/test/outside", status_code=201)
    def outside(body: MoveIn, _: AnyPrincipal, idem: Idempotent) -> Response:
        # A route that calls out (a provider) before its transaction skips that on a replay.
        if (replayed := idem.replay()) is not None:
            return replayed
        OUTSIDE_CALLS.append(body.user_id)
        return idem.run(status_code=201, work=lambda session: _grant(session, body))

    return router


OUTSIDE_CALLS: list[str] = []


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    with make_api(db) as built:
        built.coffer.app.include_router(money_router(), prefix=API_PREFIX)
        yield built


def _transfer_count(database: Database) -> int:
    with database.read() as session:
        return len(session.execute(transfers.select()).all())


def _balance(database: Database, user_id: str) -> int:
    with database.read() as session:
        account = ledger.find_account(
            session, asset=DIAMOND, owner_type="user", owner_id=user_id, kind="wallet"
        )
    return 0 if account is None else account.balance


def _post(
    api: Api, path: str, body: dict[str, Any], *, key: str | None, headers: dict[str, str]
) -> httpx.Response:
    extra = {} if key is None else {"Idempotency-Key": key}
    response: httpx.Response = api.client.post(path, json=body, headers={**headers, **extra})
    return response


def test_a_replay_returns_the_first_answer_byte_for_byte(api: Api) -> None:
    service = api.service()
    body = {"user_id": "u1", "amount": 100}
    first = _post(api, "/test/grants", body, key="grant-1", headers=service)
    assert first.status_code == 201, first.text
    assert REPLAYED_HEADER not in first.headers
    # Same request, keys in another order and other spacing: the same request.
    again = api.client.post(
        "/test/grants",
        content=b'{ "amount" : 100, "user_id" : "u1" }',
        headers={**service, "Idempotency-Key": "grant-1", "Content-Type": "application/json"},
    )
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.headers["content-type"] == first.headers["content-type"]
    assert _transfer_count(api.database) == 1
    assert _balance(api.database, "u1") == 100


def test_without_a_key_every_request_runs(api: Api) -> None:
    body = {"user_id": "u1", "amount": 10}
    for _ in range(2):
        assert _post(api, "/test/grants", body, key=None, headers=api.service()).status_code == 201
    assert _balance(api.database, "u1") == 20


def test_the_same_key_with_another_body_is_409(api: Api) -> None:
    service = api.service()
    first = _post(api, "/test/grants", {"user_id": "u1", "amount": 100}, key="k", headers=service)
    assert first.status_code == 201
    other = _post(api, "/test/grants", {"user_id": "u1", "amount": 101}, key="k", headers=service)
    assert_error(other, 409, "idempotency_conflict")
    elsewhere = _post(
        api, "/test/spends", {"user_id": "u1", "amount": 100}, key="k", headers=service
    )
    assert_error(elsewhere, 409, "idempotency_conflict")
    assert _balance(api.database, "u1") == 100


def test_keys_are_scoped_to_the_principal(api: Api) -> None:
    body = {"user_id": "u1", "amount": 5}
    one = _post(api, "/test/grants", body, key="shared", headers=api.service())
    two = _post(api, "/test/grants", body, key="shared", headers=api.admin())
    three = _post(api, "/test/grants", body, key="shared", headers=api.user("u9"))
    assert {one.status_code, two.status_code, three.status_code} == {201}
    assert len({one.content, two.content, three.content}) == 3
    assert _balance(api.database, "u1") == 15


def test_a_failure_is_not_stored_and_a_retry_runs_again(api: Api) -> None:
    service = api.service()
    spend = {"user_id": "u1", "amount": 50}
    short = _post(api, "/test/spends", spend, key="spend-1", headers=service)
    assert_error(short, 402, "insufficient_funds")
    assert _post(api, "/test/grants", {"user_id": "u1", "amount": 80}, key=None, headers=service)
    retried = _post(api, "/test/spends", spend, key="spend-1", headers=service)
    assert retried.status_code == 200, retried.text
    assert REPLAYED_HEADER not in retried.headers
    replayed = _post(api, "/test/spends", spend, key="spend-1", headers=service)
    assert replayed.content == retried.content
    assert _balance(api.database, "u1") == 30


def test_a_request_that_fails_validation_stores_nothing(api: Api) -> None:
    service = api.service()
    bad = _post(api, "/test/grants", {"user_id": "u1", "amount": 1.5}, key="v", headers=service)
    assert "body.amount" in error_fields(bad)
    good = _post(api, "/test/grants", {"user_id": "u1", "amount": 2}, key="v", headers=service)
    assert good.status_code == 201, good.text


def test_outside_work_is_skipped_on_a_replay(api: Api) -> None:
    OUTSIDE_CALLS.clear()
    body = {"user_id": "u1", "amount": 3}
    first = _post(api, "/test/outside", body, key="o1", headers=api.service())
    again = _post(api, "/test/outside", body, key="o1", headers=api.service())
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.headers[REPLAYED_HEADER] == "true"
    assert OUTSIDE_CALLS == ["u1"]
    other = _post(api, "/test/outside", {**body, "amount": 4}, key="o1", headers=api.service())
    assert_error(other, 409, "idempotency_conflict")
    assert OUTSIDE_CALLS == ["u1"]


@pytest.mark.parametrize("key", ["", "k" * 256, "naïve", 'a"b'])
def test_a_malformed_key_is_422(api: Api, key: str) -> None:
    response = api.client.post(
        "/test/grants",
        json={"user_id": "u1", "amount": 1},
        headers={**api.service(), "Idempotency-Key": key.encode("utf-8")},
    )
    assert error_fields(response) == {"header.Idempotency-Key"}
    assert _balance(api.database, "u1") == 0


def test_the_key_is_documented_in_openapi(api: Api) -> None:
    document = api.client.get("http://testserver/openapi.json").json()
    parameters = document["paths"][f"{API_PREFIX}/test/grants"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in parameters)


def _race(api: Api, bodies: list[dict[str, Any]], *, key: str) -> list[httpx.Response]:
    service = api.service()
    barrier = threading.Barrier(len(bodies))

    def send(body: dict[str, Any]) -> httpx.Response:
        barrier.wait()
        return _post(api, "/test/grants", body, key=key, headers=service)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(send, bodies))


@pytest.mark.slow
def test_concurrent_duplicates_run_once(api: Api) -> None:
    responses = _race(api, [{"user_id": "u1", "amount": 7}] * THREADS, key="race")
    assert [r.status_code for r in responses] == [201] * THREADS, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1  # every copy got the first answer's bytes
    assert sum(r.headers.get(REPLAYED_HEADER) == "true" for r in responses) == THREADS - 1
    assert _transfer_count(api.database) == 1
    assert _balance(api.database, "u1") == 7


@pytest.mark.slow
def test_concurrent_different_bodies_one_wins_the_rest_conflict(api: Api) -> None:
    bodies = [{"user_id": "u1", "amount": 1 + index} for index in range(THREADS)]
    responses = _race(api, bodies, key="contested")
    winners = [r for r in responses if r.status_code == 201]
    assert len(winners) == 1, [r.text for r in responses]
    for response in responses:
        if response.status_code != 201:
            assert_error(response, 409, "idempotency_conflict")
    assert _transfer_count(api.database) == 1
    assert _balance(api.database, "u1") == winners[0].json()["balance"]
