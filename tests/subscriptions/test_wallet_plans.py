"""Subscriptions paid from the wallet, through the HTTP app: the first charge, renewals,
dunning, cancelling, and every refusal moving nothing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from coffer.config import ConfigError, parse_shop
from coffer.db import Writer
from coffer.kit.clock import utc_now
from coffer.subscriptions import tasks
from coffer.subscriptions.periods import add_months, period_start
from tests.api.harness import Api, assert_error, error_fields
from tests.payments.helpers import assert_books_clean, paid_topup, wallet_balance
from tests.subscriptions.helpers import (
    DIAMOND_PLAN,
    DIAMOND_PRICE,
    anchor_of,
    at,
    event_types,
    mine,
    parse,
    periods_booked,
    renew,
    subscribe,
    subscribed,
    subscription_charges,
)

FUNDED = 1_250  # the "premium" package: 1000 diamonds and 250 bonus


def test_plans_list_money_and_diamond_plans(api: Api) -> None:
    data = api.client.get("/plans").json()["data"]
    assert {p["id"]: (p["interval"], p["price"], p["currency"], p["pay_with"]) for p in data} == {
        "premium-monthly": ("month", 9_900, "INR", "provider"),
        "premium-yearly": ("year", 99_900, "INR", "provider"),
        DIAMOND_PLAN: ("month", DIAMOND_PRICE, "DIAMOND", "wallet"),
    }


def test_bad_retry_days_are_refused_with_the_line_and_the_reason() -> None:
    text = "[subscriptions]\nretry_days = [2, 1]\n"
    with pytest.raises(ConfigError) as refused:
        parse_shop(text)
    assert "line 2" in str(refused.value) and "strictly increasing" in str(refused.value)
    assert parse_shop("[subscriptions]\nretry_days = [1, 3, 7]\n").subscriptions.retry_days == [
        1,
        3,
        7,
    ]


def test_a_wallet_plan_charges_the_first_period_at_once(api: Api) -> None:
    assert mine(api, "u1") == {
        "is_premium": False,
        "plan_id": None,
        "status": None,
        "current_period_end": None,
        "paid_through": None,
        "cancel_at_period_end": None,
    }
    paid_topup(api, "u1", package_id="premium")
    before = utc_now()
    response = subscribe(api, "u1", key="sub-1")
    assert response.status_code == 201, response.text
    sub = response.json()["subscription"]
    assert (sub["status"], sub["pay_with"], sub["provider"], sub["checkout"]) == (
        "active",
        "wallet",
        None,
        None,
    )
    paid_through = parse(sub["paid_through"])
    assert add_months(before.replace(microsecond=0), 1) <= paid_through
    assert paid_through <= add_months(utc_now(), 1)
    assert wallet_balance(api, "u1") == FUNDED - DIAMOND_PRICE
    me = mine(api, "u1")
    assert me["is_premium"] and me["status"] == "active" and me["plan_id"] == DIAMOND_PLAN
    assert me["paid_through"] == sub["paid_through"] == me["current_period_end"]
    assert api.client.get("/me", headers=api.user("u1")).json()["is_premium"] is True
    assert api.client.get("/me", headers=api.user("u2")).json()["is_premium"] is False
    # The same key and body: the first answer again, nothing charged twice.
    again = subscribe(api, "u1", key="sub-1")
    assert again.status_code == 201 and again.json() == response.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    (charge,) = subscription_charges(api)
    assert charge[0] == DIAMOND_PRICE and charge[1].startswith(f"{sub['id']}:period:")
    types = event_types(api, "u1")
    assert types.count("subscription.updated") == 1 and "wallet.updated" in types
    assert_books_clean(api)


def test_every_refusal_moves_nothing(api: Api) -> None:
    paid_topup(api, "u1", package_id="premium")
    paid_topup(api, "poor")  # 600 diamonds: less than the plan
    assert error_fields(subscribe(api, "u1", "no-such-plan")) == {"body.plan_id"}
    assert error_fields(subscribe(api, "u1", "premium-monthly", "wallet")) == {"body.pay_with"}
    refused = subscribe(api, "u1", DIAMOND_PLAN, "provider", provider="mock")
    assert error_fields(refused) == {"body.pay_with"}
    assert error_fields(subscribe(api, "u1", provider="mock")) == {"body.provider"}
    assert_error(subscribe(api, "u1", pay_with="card"), 422, "validation_error")
    assert_error(subscribe(api, "u1", extra_field=1), 422, "validation_error")
    # Razorpay has no keys here: a 422 that names it.
    off = subscribe(api, "u1", "premium-monthly", "provider", provider="razorpay")
    assert assert_error(off, 422, "validation_error")["provider"] == "razorpay"
    short = subscribe(api, "poor")
    assert assert_error(short, 402, "insufficient_funds")["price"] == DIAMOND_PRICE
    no_token = api.client.post(
        "/subscriptions", json={"plan_id": DIAMOND_PLAN, "pay_with": "wallet"}
    )
    assert_error(no_token, 401, "unauthenticated")
    admin = api.client.post(
        "/subscriptions", json={"plan_id": DIAMOND_PLAN, "pay_with": "wallet"}, headers=api.admin()
    )
    assert_error(admin, 403, "forbidden")
    assert_error(api.client.delete("/subscriptions/me", headers=api.user("u1")), 404, "not_found")
    assert subscription_charges(api) == [] and periods_booked(api) == 0
    assert wallet_balance(api, "u1") == FUNDED and wallet_balance(api, "poor") == 600
    assert mine(api, "u1")["status"] is None
    # One live subscription per user: the second is a 409 and charges nothing.
    subscribed(api, "u1")
    second = subscribe(api, "u1")
    assert assert_error(second, 409, "invalid_state")["status"] == "active"
    assert wallet_balance(api, "u1") == FUNDED - DIAMOND_PRICE
    assert len(subscription_charges(api)) == 1
    assert_books_clean(api)


def test_a_renewal_run_twice_in_one_period_charges_once(api: Api) -> None:
    paid_topup(api, "u1", package_id="premium")
    paid_topup(api, "u1", package_id="premium")
    sub = subscribed(api, "u1")
    due = parse(sub["paid_through"])
    assert renew(api, due - timedelta(seconds=1)) == 0  # not due yet
    assert renew(api, due) == 1
    assert renew(api, due) == 0
    assert renew(api, due + timedelta(days=3)) == 0  # the next period is not due either
    assert wallet_balance(api, "u1") == 2 * FUNDED - 2 * DIAMOND_PRICE
    me = mine(api, "u1")
    assert parse(me["paid_through"]) == period_start(anchor_of(api, sub["id"]), "month", 2)
    assert me["status"] == "active" and periods_booked(api) == 2
    keys = [key for _, key in subscription_charges(api)]
    assert len(keys) == len(set(keys)) == 2
    assert_books_clean(api)


def test_a_failed_renewal_keeps_access_retries_on_the_days_then_expires(api: Api) -> None:
    paid_topup(api, "u1", package_id="premium")  # one period, then 260 left
    sub = subscribed(api, "u1")
    due = parse(sub["paid_through"])
    assert renew(api, due) == 1  # tried, failed
    me = mine(api, "u1")
    assert me["status"] == "past_due" and parse(me["paid_through"]) == due
    at(api, due - timedelta(seconds=1))
    assert mine(api, "u1")["is_premium"]  # access lasts to paid_through
    at(api, due + timedelta(seconds=1))
    assert not mine(api, "u1")["is_premium"]
    assert renew(api, due + timedelta(hours=23)) == 0  # the first retry is a day after
    for day in (1, 2):
        assert renew(api, due + timedelta(days=day)) == 1
        assert mine(api, "u1")["status"] == "past_due"
    assert renew(api, due + timedelta(days=3)) == 1  # the last retry fails: expired
    me = mine(api, "u1")
    assert me["status"] == "expired" and parse(me["paid_through"]) == due
    assert renew(api, due + timedelta(days=30)) == 0
    assert wallet_balance(api, "u1") == FUNDED - DIAMOND_PRICE  # nothing taken by the failures
    assert len(subscription_charges(api)) == 1
    # Expired is not live: the user may subscribe again.
    paid_topup(api, "u1", package_id="premium")
    at(api, due + timedelta(days=31))
    assert subscribe(api, "u1").status_code == 201
    assert_books_clean(api)


def test_a_retry_that_succeeds_keeps_the_anchor(api: Api) -> None:
    paid_topup(api, "u1", package_id="premium")
    sub = subscribed(api, "u1")
    due = parse(sub["paid_through"])
    assert renew(api, due) == 1
    assert mine(api, "u1")["status"] == "past_due"
    paid_topup(api, "u1", package_id="premium")
    assert renew(api, due + timedelta(days=1)) == 1
    me = mine(api, "u1")
    assert me["status"] == "active"
    # The period paid late still runs from the due date, not from the retry.
    assert parse(me["paid_through"]) == period_start(anchor_of(api, sub["id"]), "month", 2)
    assert wallet_balance(api, "u1") == 2 * FUNDED - 2 * DIAMOND_PRICE
    assert_books_clean(api)


def test_cancel_at_period_end_charges_nothing_more(api: Api) -> None:
    paid_topup(api, "u1", package_id="premium")
    paid_topup(api, "u1", package_id="premium")
    sub = subscribed(api, "u1")
    due = parse(sub["paid_through"])
    cancelled = api.client.delete("/subscriptions/me", headers=api.user("u1"))
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["cancel_at_period_end"] is True and body["status"] == "active"
    assert body["is_premium"] is True
    again = api.client.delete("/subscriptions/me", headers=api.user("u1"))
    assert again.json() == body
    assert_error(subscribe(api, "u1"), 409, "invalid_state")  # still live until it ends
    assert renew(api, due) == 1
    me = mine(api, "u1")
    assert me["status"] == "canceled" and parse(me["paid_through"]) == due
    assert wallet_balance(api, "u1") == 2 * FUNDED - DIAMOND_PRICE
    assert len(subscription_charges(api)) == 1
    assert_error(api.client.delete("/subscriptions/me", headers=api.user("u1")), 404, "not_found")
    at(api, due + timedelta(minutes=1))
    assert subscribe(api, "u1").status_code == 201
    assert_books_clean(api)


def test_admin_lists_subscriptions_by_status_in_keyset_pages(api: Api) -> None:
    for user in ("a1", "a2", "a3"):
        paid_topup(api, user, package_id="premium")
        subscribed(api, user)
    api.client.delete("/subscriptions/me", headers=api.user("a2"))
    first = api.client.get("/admin/subscriptions?limit=2", headers=api.admin())
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["data"]) == 2 and page["has_more"] and page["next_cursor"]
    rest = api.client.get(
        f"/admin/subscriptions?limit=2&cursor={page['next_cursor']}", headers=api.admin()
    ).json()
    users = [s["user_id"] for s in page["data"] + rest["data"]]
    assert sorted(users) == ["a1", "a2", "a3"] and not rest["has_more"]
    active = api.client.get("/admin/subscriptions?status=active", headers=api.admin()).json()
    assert len(active["data"]) == 3
    assert all(s["checkout"] is None for s in active["data"])
    none = api.client.get("/admin/subscriptions?status=expired", headers=api.admin()).json()
    assert none["data"] == []
    assert_error(api.client.get("/admin/subscriptions", headers=api.user("a1")), 403, "forbidden")
    assert_error(
        api.client.get("/admin/subscriptions?status=bogus", headers=api.admin()),
        422,
        "validation_error",
    )


def test_two_renewal_jobs_at_once_never_charge_a_period_twice(api: Api) -> None:
    users = [f"c{i}" for i in range(8)]
    due = None
    for user in users:
        paid_topup(api, user, package_id="premium")
        paid_topup(api, user, package_id="premium")
        due = parse(subscribed(api, user)["paid_through"])
    assert due is not None
    later = due + timedelta(minutes=5)
    writers = [Writer(api.database), Writer(api.database)]  # as two processes would have
    barrier = threading.Barrier(len(writers))
    counts: list[int] = []

    def run(writer: Writer) -> None:
        barrier.wait()
        counts.append(
            tasks.renew_due(api.database, writer, lambda: later, api.coffer.settings.shop)
        )

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for writer in writers:
        writer.close()
    assert sum(counts) == len(users)
    # Even with the claims gone (a lease that lapsed), the period is not charged again.
    assert renew(api, later + timedelta(seconds=tasks.LEASE_S + 1)) == 0
    assert len(subscription_charges(api)) == 2 * len(users)
    for user in users:
        assert wallet_balance(api, user) == 2 * FUNDED - 2 * DIAMOND_PRICE
    assert_books_clean(api)


def test_a_frozen_wallet_neither_subscribes_nor_renews(api: Api) -> None:
    paid_topup(api, "u1", package_id="premium")
    paid_topup(api, "u1", package_id="premium")
    sub = subscribed(api, "u1")
    api.client.post("/admin/users/u1/freeze", json={"reason": "review"}, headers=api.admin())
    paid_topup(api, "u2", package_id="premium")
    api.client.post("/admin/users/u2/freeze", json={"reason": "review"}, headers=api.admin())
    before = wallet_balance(api, "u2")
    assert_error(subscribe(api, "u2"), 403, "account_frozen")
    assert wallet_balance(api, "u2") == before and mine(api, "u2")["status"] is None
    # The renewal counts as a failed attempt: past due, access kept to what was paid.
    due = parse(sub["paid_through"])
    funded = wallet_balance(api, "u1")
    renew(api, due)
    me = mine(api, "u1")
    assert me["status"] == "past_due" and wallet_balance(api, "u1") == funded
    assert_books_clean(api)
