"""Metered calls through the HTTP app (issue 9, item 1): holds, capture, split, expiry."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from coffer import ledger
from coffer.calls import service as calls
from coffer.calls import tasks as call_tasks
from coffer.kit.clock import utc_now
from coffer.server import _expire_holds
from coffer.wallets import service as wallets
from tests.api.harness import Api, assert_error
from tests.gifts.test_send_gift import earnings, put_user
from tests.ledger.books import state
from tests.payments.helpers import assert_books_clean, paid_topup, wallet_balance


def start(api: Api, caller: str = "caller", host: str = "host", **extra: Any) -> Any:
    return api.client.post(
        "/calls", json={"caller_id": caller, "host_id": host, **extra}, headers=api.service()
    )


def end(api: Api, call_id: str, duration_s: int) -> Any:
    return api.client.post(
        f"/calls/{call_id}/end", json={"duration_s": duration_s}, headers=api.service()
    )


def available(api: Api, user_id: str, asset: str = "DIAMOND") -> int:
    response = api.client.get("/wallet/balance", headers=api.user(user_id))
    return sum(
        a["available"]
        for a in response.json()["accounts"]
        if a["kind"] == "wallet" and a["asset"] == asset
    )


def fund_rupees(api: Api, user_id: str, amount: int) -> None:
    """An INR wallet balance, as a calling app's rupee top-up would leave it."""
    with api.database.unit_of_work() as session:
        wallet = wallets.wallet_account(session, user_id, "INR")
        source = wallets.system_account(session, kind="issuance", asset="INR")
        ledger.transfer(
            session,
            debit_account_id=source.id,
            credit_account_id=wallet.id,
            amount=amount,
            type="purchase",
        )


def test_call_holds_captures_splits_and_releases(api: Api) -> None:
    response = api.client.put(
        "/agencies/ag1", json={"name": "Agency", "commission_bps": 1000}, headers=api.admin()
    )
    assert response.status_code == 200
    put_user(api, "host", agency_id="ag1")
    paid_topup(api, "caller")  # 600 diamonds; default rate 60 a minute, 5 minutes held
    started = start(api)
    assert started.status_code == 201, started.text
    call = started.json()["call"]
    assert (call["status"], call["hold_amount"], call["authorized_seconds"]) == ("active", 300, 300)
    assert available(api, "caller") == 300
    ended = end(api, call["id"], 61)  # ceil(61 * 60 / 60) = 61
    assert ended.status_code == 200, ended.text
    bill = ended.json()["call"]
    assert bill["cost"] == 61 and bill["status"] == "ended"
    assert (bill["agency_amount"], bill["platform_amount"], bill["host_amount"]) == (6, 12, 43)
    assert wallet_balance(api, "caller") == 539 == available(api, "caller")
    assert earnings(api, "host") == 43
    again = end(api, call["id"], 200)  # ending twice answers the first result
    assert again.status_code == 200 and again.json()["call"]["cost"] == 61
    assert wallet_balance(api, "caller") == 539
    seen = api.client.get(f"/calls/{call['id']}", headers=api.user("caller"))
    assert seen.json()["call"]["cost"] == 61
    assert_error(
        api.client.get(f"/calls/{call['id']}", headers=api.user("stranger")), 404, "not_found"
    )
    types = [
        e["type"] for e in api.client.get("/events", headers=api.user("caller")).json()["data"]
    ]
    assert types.count("call.updated") == 2
    assert_books_clean(api)


def test_rupee_call_thirty_seconds_at_ten_rupees_a_minute_costs_five(api: Api) -> None:
    put_user(api, "host")
    fund_rupees(api, "caller", 10_000)  # ₹100
    started = start(api, asset="INR", rate_per_minute=1_000)  # ₹10 a minute, in paise
    assert started.status_code == 201, started.text
    call = started.json()["call"]
    assert call["hold_amount"] == 5_000 and call["authorized_seconds"] == 300
    ended = end(api, call["id"], 30)
    assert ended.json()["call"]["cost"] == 500  # ₹5
    assert available(api, "caller", "INR") == 9_500
    assert_books_clean(api)


def test_a_call_longer_than_its_hold_is_capped_and_extension_adds_time(api: Api) -> None:
    put_user(api, "host")
    paid_topup(api, "caller")  # 600
    call = start(api).json()["call"]
    extended = api.client.post(f"/calls/{call['id']}/extend", headers=api.service())
    assert extended.status_code == 200, extended.text
    assert extended.json()["call"]["authorized_seconds"] == 600
    assert extended.json()["call"]["hold_amount"] == 600
    assert available(api, "caller") == 0
    nothing_more = api.client.post(f"/calls/{call['id']}/extend", headers=api.service())
    assert_error(nothing_more, 402, "insufficient_funds")
    bill = end(api, call["id"], 3_600).json()["call"]
    assert bill["cost"] == 600  # an hour costs 3600, but only 600 was held
    assert wallet_balance(api, "caller") == 0
    assert_books_clean(api)


def test_start_below_minimum_balance_is_402_and_moves_nothing(api: Api) -> None:
    put_user(api, "host")
    paid_topup(api, "caller", diamonds=100)
    before = state(api.database)
    assert_error(start(api, rate_per_minute=101), 402, "below_minimum_balance")
    assert_error(start(api, caller="nobody-with-funds"), 402, "below_minimum_balance")
    assert_error(start(api, host="caller"), 409, "invalid_state")
    assert_error(start(api, rate_per_minute=1.5), 422, "validation_error")
    assert_error(start(api, rate_per_minute=0), 422, "validation_error")
    assert_error(
        api.client.post(
            "/calls", json={"caller_id": "caller", "host_id": "host"}, headers=api.user("caller")
        ),
        403,
        "forbidden",
    )
    assert_error(end(api, "call_00000000000000000000", 5), 404, "not_found")
    assert_error(end(api, "not-a-call", 5), 422, "validation_error")
    after = state(api.database)
    assert after.transfer_count == before.transfer_count and after.holds == before.holds


def test_an_unended_call_expires_and_the_caller_pays_nothing(api: Api) -> None:
    put_user(api, "host")
    paid_topup(api, "caller")
    call = start(api).json()["call"]
    later = utc_now() + timedelta(seconds=300 + calls.GRACE_S + 1)
    with api.database.unit_of_work() as session:
        assert ledger.expire_holds(session, now=later) == 1
    writer = api.coffer.writer
    assert writer is not None
    with api.database.read() as session:
        due = call_tasks.lapsed(session, now=later, limit=10)
    assert due == [call["id"]]
    for call_id in due:
        writer.run(call_tasks.expire_work(call_id, now=later))
    seen = api.client.get(f"/calls/{call['id']}", headers=api.service()).json()["call"]
    assert seen["status"] == "expired" and seen["cost"] == 0
    assert wallet_balance(api, "caller") == 600 == available(api, "caller")
    assert_error(end(api, call["id"], 30), 409, "invalid_state")
    assert _expire_holds(api.database, writer) == 0
    assert_books_clean(api)


def test_twenty_concurrent_calls_never_hold_more_than_the_balance(api: Api) -> None:
    put_user(api, "host")
    paid_topup(api, "caller", diamonds=600)  # ten minutes at 60 a minute
    barrier = threading.Barrier(20)

    def one(_: int) -> Any:
        barrier.wait()
        return start(api, rate_per_minute=60)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    held = sum(a.json()["call"]["hold_amount"] for a in answers if a.status_code == 201)
    assert held <= 600 and available(api, "caller") == 600 - held >= 0
    assert {a.status_code for a in answers} <= {201, 402}
    assert sum(a.status_code == 201 for a in answers) >= 2
    assert_books_clean(api)


def test_call_rate_global_and_per_host(api: Api) -> None:
    put_user(api, "host")
    rate = api.client.get("/wallet/call-rate", headers=api.user("fan")).json()
    assert rate == {"asset": "DIAMOND", "rate_per_minute": 60, "host_id": None}
    body = {"rate_per_minute": 90, "asset": "DIAMOND", "host_id": "host"}
    assert (
        api.client.put("/admin/settings/call-rate", json=body, headers=api.admin()).status_code
        == 200
    )
    host_rate = api.client.get("/wallet/call-rate?host_id=host", headers=api.user("fan")).json()
    assert host_rate["rate_per_minute"] == 90
    assert_error(
        api.client.put("/admin/settings/call-rate", json=body, headers=api.service()),
        403,
        "forbidden",
    )
    paid_topup(api, "fan")
    call = start(api, caller="fan").json()["call"]
    assert call["rate_per_minute"] == 90
    listed = api.client.get("/admin/calls?status=active&host_id=host", headers=api.admin()).json()
    assert [c["id"] for c in listed["data"]] == [call["id"]]


@given(
    duration_s=st.integers(min_value=0, max_value=24 * 3600),
    rate=st.integers(min_value=1, max_value=10**6),
)
def test_cost_is_the_ceiling_of_the_minutes_used(duration_s: int, rate: int) -> None:
    cost = calls.cost_of(duration_s, rate)
    assert cost * 60 >= duration_s * rate > (cost - 1) * 60
    seconds = calls._seconds_for(cost, rate)
    assert calls.cost_of(seconds, rate) <= cost


def test_two_writers_running_the_expiry_job_at_once_expire_each_call_once(api: Api) -> None:
    from coffer.calls import tasks
    from coffer.db import Writer

    put_user(api, "host")
    made = []
    for index in range(6):
        caller = f"caller{index}"
        paid_topup(api, caller)
        made.append(start(api, caller=caller).json()["call"]["id"])
    later = utc_now() + timedelta(seconds=300 + calls.GRACE_S + 1)
    writers = [Writer(api.database), Writer(api.database)]  # as two processes would have
    barrier = threading.Barrier(2)

    def run(writer: Writer) -> int:
        barrier.wait()
        return tasks.expire_lapsed(api.database, writer, lambda: later)

    try:
        with ThreadPoolExecutor(2) as pool:
            counts = list(pool.map(run, writers))
    finally:
        for writer in writers:
            writer.close()
    assert sum(counts) == len(made)
    for index, call_id in enumerate(made):
        stream = api.client.get("/events", headers=api.user(f"caller{index}")).json()["data"]
        expired = [
            e for e in stream if e["type"] == "call.updated" and e["data"]["status"] == "expired"
        ]
        assert len(expired) == 1, (call_id, stream)


def test_the_nearly_used_warning_is_sent_once(api: Api) -> None:
    from coffer.calls import tasks

    put_user(api, "host")
    paid_topup(api, "caller")
    start(api)
    writer = api.coffer.writer
    assert writer is not None
    soon = utc_now() + timedelta(seconds=300 - calls.WARN_BEFORE_S + 1)
    assert tasks.warn_nearly_used(api.database, writer, lambda: soon) == 1
    assert tasks.warn_nearly_used(api.database, writer, lambda: soon) == 0
    stream = api.client.get("/events", headers=api.user("caller")).json()["data"]
    warnings = [e for e in stream if e["data"].get("warning") == "time_nearly_used"]
    assert len(warnings) == 1 and warnings[0]["data"]["seconds_left"] <= 60
