"""Subscriptions paid through a provider's recurring billing, with the sandbox provider: pending
until the first charge, each period booked once whatever order and however often the webhooks
arrive, failures, the provider ending it, and cancelling."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from coffer.kit.clock import utc_now
from coffer.subscriptions import billing
from coffer.subscriptions import service as subscriptions
from coffer.subscriptions.periods import add_months, from_unix, to_unix
from tests.api.harness import Api, assert_error
from tests.payments.helpers import assert_books_clean, mock_provider, paid_topup, wallet_balance
from tests.subscriptions.helpers import (
    at,
    event_types,
    mine,
    parse,
    periods_booked,
    renew,
    subscribed,
    subscription_charges,
)

MONTHLY = "premium-monthly"
PRICE = 9_900


def charged(
    api: Api, provider_subscription_id: str, start_s: int, end_s: int, **fields: Any
) -> Any:
    body, headers = mock_provider(api).build_webhook(
        fields.pop("kind", "subscription.charged"),
        amount=fields.pop("amount", PRICE),
        currency=fields.pop("currency", "INR"),
        payment_id=fields.pop("payment_id", f"mock_pay_{start_s}"),
        extra={
            "subscription_id": provider_subscription_id,
            "period_start_unix": start_s,
            "period_end_unix": end_s,
        },
        **fields,
    )
    response = api.client.post("/webhooks/mock", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response


def periods(count: int) -> list[tuple[int, int]]:
    start = utc_now().replace(microsecond=0)
    return [
        (to_unix(add_months(start, i)), to_unix(add_months(start, i + 1))) for i in range(count)
    ]


def open_sub(api: Api, user_id: str = "u1") -> dict[str, Any]:
    sub = subscribed(api, user_id, MONTHLY, pay_with="provider", provider="mock")
    assert sub["status"] == "pending" and sub["provider"] == "mock"
    assert sub["checkout"] == {"subscription_id": sub["provider_subscription_id"]}
    return sub


def test_a_provider_plan_is_pending_until_its_first_charge(api: Api) -> None:
    sub = open_sub(api)
    me = mine(api, "u1")
    assert (me["status"], me["is_premium"], me["paid_through"]) == ("pending", False, None)
    assert_error(
        api.client.post(
            "/subscriptions",
            json={"plan_id": MONTHLY, "pay_with": "provider", "provider": "mock"},
            headers=api.user("u1"),
        ),
        409,
        "invalid_state",
    )
    (first,) = periods(1)
    charged(api, sub["provider_subscription_id"], *first)
    me = mine(api, "u1")
    assert me["status"] == "active" and me["is_premium"]
    assert parse(me["paid_through"]) == from_unix(first[1])
    assert [amount for amount, _ in subscription_charges(api)] == [PRICE]
    assert event_types(api, "u1").count("subscription.updated") == 2
    assert_books_clean(api)


def test_a_charge_delivered_twice_and_out_of_order_books_each_period_once(api: Api) -> None:
    sub = open_sub(api)
    psid = sub["provider_subscription_id"]
    first, second = periods(2)
    # The second period's charge arrives first, then the first's, then both again.
    charged(api, psid, *second)
    charged(api, psid, *first)
    body, headers = mock_provider(api).build_webhook(
        "subscription.charged",
        amount=PRICE,
        currency="INR",
        event_id="mock_evt_same",
        extra={
            "subscription_id": psid,
            "period_start_unix": first[0],
            "period_end_unix": first[1],
        },
    )
    for _ in range(2):  # the same delivery twice: the inbox answers the copy
        assert api.client.post("/webhooks/mock", content=body, headers=headers).status_code == 200
    charged(api, psid, *second, payment_id="mock_pay_other")  # another event, same period
    assert periods_booked(api) == 2
    assert [amount for amount, _ in subscription_charges(api)] == [PRICE, PRICE]
    me = mine(api, "u1")
    assert me["status"] == "active" and parse(me["paid_through"]) == from_unix(second[1])
    assert_books_clean(api)


def test_a_failed_charge_keeps_access_and_the_provider_ending_it_expires_it(api: Api) -> None:
    sub = open_sub(api)
    psid = sub["provider_subscription_id"]
    first, second = periods(2)
    charged(api, psid, *first)
    due = from_unix(first[1])
    # A failure for the period already paid (late, out of order) changes nothing.
    charged(api, psid, *first, kind="subscription.payment_failed", amount=None)
    assert mine(api, "u1")["status"] == "active"
    charged(api, psid, *second, kind="subscription.payment_failed", amount=None)
    me = mine(api, "u1")
    assert me["status"] == "past_due" and parse(me["paid_through"]) == due
    at(api, due - timedelta(seconds=1))
    assert mine(api, "u1")["is_premium"]
    at(api, due + timedelta(seconds=1))
    assert not mine(api, "u1")["is_premium"]
    # The provider retries by itself: a charge that succeeds later makes it active again.
    at(api, utc_now())
    charged(api, psid, *second)
    assert mine(api, "u1")["status"] == "active"
    charged(api, psid, second[1], second[1] + 1, kind="subscription.halted", amount=None)
    assert mine(api, "u1")["status"] == "expired"
    # Ended: a late failure cannot bring it back.
    charged(api, psid, *second, kind="subscription.payment_failed", amount=None)
    assert mine(api, "u1")["status"] == "expired"
    assert periods_booked(api) == 2
    assert_books_clean(api)


def test_a_provider_plan_that_stays_past_due_expires_after_the_last_retry_day(api: Api) -> None:
    sub = open_sub(api)
    psid = sub["provider_subscription_id"]
    first, second = periods(2)
    charged(api, psid, *first)
    charged(api, psid, *second, kind="subscription.payment_failed", amount=None)
    due = from_unix(first[1])
    assert renew(api, due + timedelta(days=1)) == 0  # the provider is still retrying
    assert mine(api, "u1")["status"] == "past_due"
    assert renew(api, due + timedelta(days=3)) == 1
    assert mine(api, "u1")["status"] == "expired"
    assert_books_clean(api)


def test_events_the_webhook_cannot_apply_are_refused_and_move_nothing(api: Api) -> None:
    sub = open_sub(api)
    psid = sub["provider_subscription_id"]
    (first,) = periods(1)
    charged(api, psid, *first, amount=PRICE + 1)  # parked: the amount is not the plan's
    charged(api, psid, *first, currency="USD")
    charged(api, "mock_sub_unknown", *first)  # not (yet) ours: kept for a retry
    charged(api, psid, first[1], first[0])  # a period that ends before it starts
    assert periods_booked(api) == 0 and subscription_charges(api) == []
    assert mine(api, "u1")["status"] == "pending"
    bad_signature = api.client.post(
        "/webhooks/mock", content=b'{"id":"x"}', headers={"X-Mock-Signature": "t=1,v1=00"}
    )
    assert_error(bad_signature, 400, "invalid_signature")
    assert_books_clean(api)


def test_cancel_tells_the_provider_and_ends_at_the_period_end(api: Api) -> None:
    sub = open_sub(api)
    psid = sub["provider_subscription_id"]
    (first,) = periods(1)
    charged(api, psid, *first)
    cancelled = api.client.delete("/subscriptions/me", headers=api.user("u1"))
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["cancel_at_period_end"] is True
    assert cancelled.json()["status"] == "active" and cancelled.json()["is_premium"]
    due = from_unix(first[1])
    assert renew(api, due - timedelta(minutes=1)) == 0
    assert renew(api, due) == 1
    me = mine(api, "u1")
    assert me["status"] == "canceled" and parse(me["paid_through"]) == due
    assert periods_booked(api) == 1
    assert_books_clean(api)


def test_a_pending_subscription_cancelled_ends_at_once(api: Api) -> None:
    open_sub(api)
    cancelled = api.client.delete("/subscriptions/me", headers=api.user("u1"))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "canceled"
    assert cancelled.json()["is_premium"] is False
    assert open_sub(api)["status"] == "pending"  # not live any more: a new one may start
    assert_books_clean(api)


def test_a_stale_renewal_unit_answers_nothing_and_moves_nothing(api: Api) -> None:
    """The guard under the writer's lock, without the job's claims: a unit planned from a
    snapshot that is no longer due (another job charged the period) charges nothing."""
    paid_topup(api, "u1", package_id="premium")
    paid_topup(api, "u1", package_id="premium")
    made = subscribed(api, "u1")
    due = parse(made["paid_through"])
    with api.database.read() as session:
        snapshot = subscriptions.get(session, made["id"])
    wallet, revenue_id = subscriptions.wallet_accounts(api.database, "u1")
    writer = api.coffer.writer
    assert writer is not None
    unit = billing.renewal_work(snapshot, wallet_id=wallet.id, revenue_id=revenue_id, now=due)
    assert writer.run(unit) == "charged"
    again = billing.renewal_work(snapshot, wallet_id=wallet.id, revenue_id=revenue_id, now=due)
    assert writer.run(again) is None
    assert len(subscription_charges(api)) == 2  # the first period and this one, once
    assert wallet_balance(api, "u1") == 2 * 1_250 - 2 * 990
    assert_books_clean(api)
