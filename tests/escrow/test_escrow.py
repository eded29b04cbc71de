"""Marketplace escrow through the HTTP app (issue 9, item 2): funding by verify or webhook,
release less the fee, refund through the provider, disputes, auto-release, and every illegal
move from every state refused with nothing moved."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from coffer import ledger
from coffer.escrow import tasks as escrow_tasks
from coffer.escrow.tables import escrows
from coffer.kit.clock import utc_now
from coffer.ledger.tables import transfers
from tests.api.harness import Api, assert_error
from tests.payments.helpers import assert_books_clean, verify, webhook

FEE_BPS = 500  # the default escrow fee


def open_escrow(
    api: Api, payer: str = "payer", payee: str = "payee", amount: int = 10_000, **extra: Any
) -> dict[str, Any]:
    response = api.client.post(
        "/escrows",
        json={"payee_id": payee, "amount": amount, "currency": "INR", **extra},
        headers=api.user(payer),
    )
    assert response.status_code == 201, response.text
    escrow: dict[str, Any] = response.json()["escrow"]
    assert escrow["status"] == "pending" and escrow["order"]["checkout"]
    return escrow


def get(api: Api, escrow_id: str, who: dict[str, str] | None = None) -> dict[str, Any]:
    response = api.client.get(f"/escrows/{escrow_id}", headers=who or api.admin())
    assert response.status_code == 200, response.text
    escrow: dict[str, Any] = response.json()["escrow"]
    return escrow


def funded(api: Api, payer: str = "payer", payee: str = "payee", **extra: Any) -> dict[str, Any]:
    escrow = open_escrow(api, payer, payee, **extra)
    response = verify(api, payer, escrow["order"])
    assert response.status_code == 200, response.text
    held = get(api, escrow["id"])
    assert held["status"] == "held" and held["left"] == escrow["amount"]
    return held


def move(api: Api, escrow_id: str, action: str, who: dict[str, str], **body: Any) -> Any:
    return api.client.post(f"/escrows/{escrow_id}/{action}", json=body, headers=who)


def inr_wallet(api: Api, user_id: str) -> int:
    response = api.client.get("/wallet/balance", headers=api.user(user_id))
    return sum(
        a["posted"]
        for a in response.json()["accounts"]
        if a["kind"] == "wallet" and a["asset"] == "INR"
    )


def transfer_count(api: Api) -> int:
    with api.database.read() as session:
        return int(session.execute(select(func.count()).select_from(transfers)).scalar_one())


def test_funded_by_verify_released_in_part_then_refunded(api: Api) -> None:
    escrow = funded(api)
    response = move(api, escrow["id"], "release", api.user("payer"), amount=6_000)
    assert response.status_code == 200, response.text
    part = response.json()["escrow"]
    assert part["status"] == "partially_released"
    assert (part["released_amount"], part["fee_amount"], part["left"]) == (6_000, 300, 4_000)
    assert inr_wallet(api, "payee") == 5_700  # 6,000 less the 5 % fee

    response = move(api, escrow["id"], "refund", api.admin(), reason="order cancelled")
    assert response.status_code == 200, response.text
    refunded = response.json()["escrow"]
    assert refunded["status"] == "refunded"
    assert (refunded["refunded_amount"], refunded["left"]) == (4_000, 0)
    order = api.client.get("/wallet/payment-orders", headers=api.user("payer")).json()["data"][0]
    assert (order["status"], order["refunded_amount"]) == ("partially_refunded", 4_000)
    assert inr_wallet(api, "payee") == 5_700
    assert_books_clean(api)


def test_a_webhook_funds_it_the_same_way(api: Api) -> None:
    escrow = open_escrow(api)
    order = escrow["order"]
    response = webhook(
        api,
        "payment.succeeded",
        provider_order_id=order["provider_order_id"],
        payment_id=order["checkout"]["payment_id"],
        amount=escrow["amount"],
        currency="INR",
    )
    assert response.status_code == 200, response.text
    assert get(api, escrow["id"])["status"] == "held"
    # The client's verify afterwards is a no-op: funded once.
    assert verify(api, "payer", escrow["order"]).json()["credited"] is False
    response = move(api, escrow["id"], "release", api.user("payer"))
    assert response.json()["escrow"]["status"] == "released"
    assert inr_wallet(api, "payee") == 9_500
    assert_books_clean(api)


def test_the_events_tell_both_parties(api: Api) -> None:
    escrow = funded(api)
    move(api, escrow["id"], "release", api.user("payer"))
    for user in ("payer", "payee"):
        seen = api.client.get("/events", headers=api.user(user)).json()["data"]
        statuses = [e["data"]["status"] for e in seen if e["type"] == "escrow.updated"]
        assert statuses == ["held", "released"], (user, statuses)
    payee = api.client.get("/events", headers=api.user("payee")).json()["data"]
    assert any(e["type"] == "wallet.updated" and e["data"]["asset"] == "INR" for e in payee)


def test_who_may_see_and_move_it(api: Api) -> None:
    escrow = funded(api)
    assert get(api, escrow["id"], api.user("payee"))["id"] == escrow["id"]
    for who in (api.user("stranger"),):
        assert_error(api.client.get(f"/escrows/{escrow['id']}", headers=who), 404, "not_found")
        assert_error(move(api, escrow["id"], "release", who), 404, "not_found")
        assert_error(move(api, escrow["id"], "dispute", who, reason="x"), 404, "not_found")
    assert_error(move(api, escrow["id"], "release", api.user("payee")), 403, "forbidden")
    assert_error(move(api, escrow["id"], "refund", api.user("payee")), 403, "forbidden")
    assert_error(move(api, escrow["id"], "release", api.service()), 403, "forbidden")
    assert_error(api.client.get("/admin/escrows", headers=api.user("payer")), 403, "forbidden")
    missing = "esc_" + "0" * 20
    assert_error(move(api, missing, "release", api.admin(), reason="x"), 404, "not_found")
    mine = api.client.get("/escrows", headers=api.user("payee")).json()["data"]
    assert [e["id"] for e in mine] == [escrow["id"]]
    assert api.client.get("/escrows", headers=api.user("stranger")).json()["data"] == []
    admin = api.client.get("/admin/escrows?status=held", headers=api.admin()).json()["data"]
    assert [e["id"] for e in admin] == [escrow["id"]]
    assert get(api, escrow["id"])["status"] == "held"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payee_id": "payer", "amount": 100, "currency": "INR"}, "body.payee_id"),
        ({"payee_id": "payee", "amount": 100, "currency": "DIAMOND"}, "body.currency"),
        ({"payee_id": "payee", "amount": 100.0, "currency": "INR"}, "body.amount"),
        ({"payee_id": "payee", "amount": 0, "currency": "INR"}, "body.amount"),
        ({"payee_id": "payee", "amount": 100, "currency": "INR", "provider": "paypal"}, None),
        (
            {"payee_id": "payee", "amount": 100, "currency": "INR",
             "auto_release_at": "2020-01-01T00:00:00Z"},
            "body.auto_release_at",
        ),
        ({"payee_id": "payee", "amount": 100, "currency": "INR", "extra": 1}, None),
    ],
)  # fmt: skip
def test_bad_openings_are_refused_and_open_nothing(
    api: Api, body: dict[str, Any], field: str | None
) -> None:
    response = api.client.post("/escrows", json=body, headers=api.user("payer"))
    details = assert_error(response, 422, "validation_error")
    if field is not None:
        assert field in {f["field"] for f in details.get("fields", [])}, details
    assert api.client.get("/escrows", headers=api.user("payer")).json()["data"] == []


def test_bad_moves_are_refused_and_move_nothing(api: Api) -> None:
    escrow = funded(api)
    before = transfer_count(api)
    for amount in (0, 10_001, 1.5):
        response = move(api, escrow["id"], "release", api.user("payer"), amount=amount)
        assert_error(response, 422, "validation_error")
    # An operator's move needs a reason (it goes into the audit trail).
    assert_error(move(api, escrow["id"], "release", api.admin()), 422, "validation_error")
    assert_error(move(api, escrow["id"], "refund", api.admin()), 422, "validation_error")
    assert_error(move(api, escrow["id"], "dispute", api.user("payer")), 422, "validation_error")
    # Its order is refunded through the escrow, never around it.
    response = api.client.post(
        f"/admin/payment-orders/{escrow['order_id']}/refund",
        json={"reason": "around the escrow"},
        headers=api.admin(),
    )
    assert_error(response, 409, "invalid_state")
    assert transfer_count(api) == before
    assert get(api, escrow["id"])["status"] == "held"
    assert_books_clean(api)


def test_a_dispute_waits_for_an_admin(api: Api) -> None:
    escrow = funded(api)
    response = move(api, escrow["id"], "dispute", api.user("payee"), reason="not paid for work")
    disputed = response.json()["escrow"]
    assert (disputed["status"], disputed["dispute_reason"]) == ("disputed", "not paid for work")
    assert_error(move(api, escrow["id"], "release", api.user("payer")), 409, "invalid_state")
    assert_error(move(api, escrow["id"], "refund", api.user("payer")), 409, "invalid_state")
    response = move(api, escrow["id"], "release", api.admin(), amount=2_000, reason="split it")
    assert response.json()["escrow"]["status"] == "partially_released", response.text
    response = move(api, escrow["id"], "refund", api.admin(), reason="rest to the payer")
    assert response.json()["escrow"]["status"] == "refunded", response.text
    # Both decisions are in the operator audit trail, with who and why.
    trail = api.client.get("/admin/audit-log", headers=api.admin()).json()["data"]
    moves = [(e["action"], e["subject_id"], e["reason"]) for e in trail]
    assert ("escrow.release", escrow["id"], "split it") in moves
    assert ("escrow.refund", escrow["id"], "rest to the payer") in moves
    assert_books_clean(api)


def test_a_release_with_a_key_answers_once(api: Api) -> None:
    escrow = funded(api)
    headers = {**api.user("payer"), "Idempotency-Key": "release-1"}
    first = api.client.post(
        f"/escrows/{escrow['id']}/release", json={"amount": 100}, headers=headers
    )
    second = api.client.post(
        f"/escrows/{escrow['id']}/release", json={"amount": 100}, headers=headers
    )
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert get(api, escrow["id"])["released_amount"] == 100


def test_copies_of_one_refund_that_arrive_together_answer_alike(api: Api) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from coffer.payments.tables import refunds

    escrow = funded(api)
    copies = 6
    barrier = threading.Barrier(copies)
    headers = {**api.user("payer"), "Idempotency-Key": "refund-1"}

    def refund(_: int) -> Any:
        barrier.wait()
        return move(api, escrow["id"], "refund", headers)

    with ThreadPoolExecutor(copies) as pool:
        answers = list(pool.map(refund, range(copies)))
    assert [a.status_code for a in answers] == [200] * copies, [a.text for a in answers]
    assert {a.json()["escrow"]["status"] for a in answers} == {"refunded"}
    with api.database.read() as session:
        made = session.execute(select(func.count()).select_from(refunds)).scalar_one()
    assert made == 1
    assert get(api, escrow["id"])["refunded_amount"] == escrow["amount"]
    # Another reason under the same key is another request.
    other = move(api, escrow["id"], "refund", headers, reason="changed my mind")
    assert_error(other, 409, "idempotency_conflict")
    assert_books_clean(api)


# ---------------------------------------------------------------------------------------------
# The whole state machine, from the spec (API.md "Escrow"), not from the code's table.

ROLES = ("payer", "payee", "admin")
ALLOWED = {
    ("held", "release"): {"payer", "admin"},
    ("partially_released", "release"): {"payer", "admin"},
    ("disputed", "release"): {"admin"},
    ("held", "refund"): {"payer", "admin"},
    ("partially_released", "refund"): {"admin"},
    ("disputed", "refund"): {"admin"},
    ("held", "dispute"): {"payer", "payee"},
    ("partially_released", "dispute"): {"payer", "payee"},
}
EVER = {"release": {"payer", "admin"}, "refund": {"payer", "admin"}, "dispute": {"payer", "payee"}}


def _in_state(api: Api, state: str, n: int) -> dict[str, Any]:
    payer, payee = f"payer{n}", f"payee{n}"
    if state == "pending":
        return get(api, open_escrow(api, payer, payee)["id"])
    escrow = funded(api, payer, payee)
    steps = {
        "held": [],
        "partially_released": [("release", payer, {"amount": 1_000})],
        "released": [("release", payer, {})],
        "disputed": [("dispute", payer, {"reason": "late"})],
        "refunded": [("refund", payer, {})],
    }[state]
    for action, who, body in steps:
        response = move(api, escrow["id"], action, api.user(who), **body)
        assert response.status_code == 200, response.text
    return get(api, escrow["id"])


def test_every_illegal_move_from_every_state_is_refused(api: Api) -> None:
    states = ("pending", "held", "partially_released", "released", "disputed", "refunded")
    for n, state in enumerate(states):
        escrow = _in_state(api, state, n)
        assert escrow["status"] == state
        who = {"payer": api.user(escrow["payer_id"]), "payee": api.user(escrow["payee_id"])}
        for action in ("release", "refund", "dispute"):
            for role in ROLES:
                if role in ALLOWED.get((state, action), set()):
                    continue
                before = transfer_count(api)
                headers = api.admin() if role == "admin" else who[role]
                body = {"reason": "try"}
                response = move(api, escrow["id"], action, headers, **body)
                if role not in EVER[action]:
                    assert_error(response, 403, "forbidden")
                else:
                    assert_error(response, 409, "invalid_state")
                assert transfer_count(api) == before, (state, action, role)
                after = get(api, escrow["id"])
                assert after == escrow, (state, action, role)
    assert_books_clean(api)


# ---------------------------------------------------------------------------------------------
# Auto-release


def _make_due(api: Api, escrow_id: str, at: datetime) -> None:
    with api.database.unit_of_work() as session:
        session.execute(update(escrows).where(escrows.c.id == escrow_id).values(auto_release_at=at))


def test_auto_release_with_a_fake_clock_and_a_dispute_that_stops_it(api: Api) -> None:
    soon = (utc_now() + timedelta(hours=1)).isoformat()
    plain = funded(api, "p1", "q1", auto_release_at=soon)
    quarrel = funded(api, "p2", "q2", auto_release_at=soon)
    move(api, quarrel["id"], "dispute", api.user("q2"), reason="never delivered")
    writer = api.coffer.writer
    assert writer is not None
    now = utc_now()
    assert escrow_tasks.release_due(api.database, writer, clock=lambda: now) == 0  # not yet
    later = now + timedelta(hours=2)
    assert escrow_tasks.release_due(api.database, writer, clock=lambda: later) == 1
    assert escrow_tasks.release_due(api.database, writer, clock=lambda: later) == 0  # once
    assert get(api, plain["id"])["status"] == "released"
    assert inr_wallet(api, "q1") == 10_000 - 10_000 * FEE_BPS // 10_000
    stopped = get(api, quarrel["id"])
    assert (stopped["status"], stopped["auto_release_at"]) == ("disputed", None)
    assert inr_wallet(api, "q2") == 0
    assert_books_clean(api)


def test_the_fee_rounds_down_and_the_payee_keeps_the_rest(api: Api) -> None:
    escrow = funded(api, amount=10_000)
    for amount in (1, 19, 21, 333):
        response = move(api, escrow["id"], "release", api.user("payer"), amount=amount)
        assert response.status_code == 200, response.text
    got = get(api, escrow["id"])
    fees = sum(a * FEE_BPS // 10_000 for a in (1, 19, 21, 333))
    assert got["fee_amount"] == fees
    assert inr_wallet(api, "payee") == 374 - fees
    with api.database.read() as session:
        account = ledger.find_account(
            session, asset="INR", owner_type="system", owner_id=escrow["id"], kind="escrow"
        )
    assert account is not None and account.balance == 10_000 - 374
    assert_books_clean(api)


def test_parallel_releases_never_take_more_than_is_held(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    escrow = funded(api, amount=10_000)

    def release(_: int) -> int:
        response = move(api, escrow["id"], "release", api.user("payer"), amount=1_500)
        assert response.status_code in (200, 409, 422), response.text
        return response.status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(release, range(12)))
    done = get(api, escrow["id"])
    assert done["released_amount"] == 1_500 * codes.count(200) <= 10_000
    assert done["left"] == 10_000 - done["released_amount"] >= 0
    assert inr_wallet(api, "payee") == done["released_amount"] - done["fee_amount"]
    assert_books_clean(api)


def test_verify_notices_an_escrow_whose_books_disagree(api: Api) -> None:
    from coffer.audit.verify import verify_books

    escrow = funded(api)
    assert verify_books(api.database).ok
    with api.database.unit_of_work() as session:
        session.execute(
            update(escrows).where(escrows.c.id == escrow["id"]).values(released_amount=1)
        )
    report = verify_books(api.database).as_dict()
    assert report["ok"] is False
    problems = [p for c in report["checks"] for p in c["problems"]]
    assert any(escrow["id"] in p for p in problems), problems
