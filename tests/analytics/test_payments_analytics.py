"""`GET /admin/analytics/payments` and the success-rate floor alert, through the HTTP app."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from coffer import ledger
from coffer.analytics import check_success_floor
from coffer.analytics.tables import alert_states
from coffer.db import Database, Writer
from coffer.events.tables import events
from coffer.kit.clock import utc_now
from coffer.wallets.service import platform_account
from tests.api.harness import Api, assert_error, error_fields, make_api
from tests.payments.helpers import assert_books_clean, topup, verify, webhook

PATH = "/admin/analytics/payments"
MARCH = {"from": "2026-03-01", "to": "2026-05-01"}


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    # A floor over few attempts, so the alert tests need few orders.
    with make_api(db, payment_success_attempts_min=4) as built:
        yield built


def at(api: Api, moment: datetime) -> None:
    api.coffer.app.state.clock = lambda: moment


def paid(api: Api, user_id: str, **body: Any) -> dict[str, Any]:
    order = topup(api, user_id, **(body or {"diamonds": 200}))
    response = verify(api, user_id, order)
    assert response.status_code == 200, response.text
    return order


def failed(api: Api, user_id: str, reason: str = "card declined", **body: Any) -> dict[str, Any]:
    order = topup(api, user_id, **(body or {"diamonds": 200}))
    response = webhook(
        api,
        "payment.failed",
        provider_order_id=order["provider_order_id"],
        payment_id=f"mock_pay_{order['id']}",
        amount=order["amount"],
        currency=order["currency"],
        failure_reason=reason,
    )
    assert response.status_code == 200, response.text
    return order


def report(api: Api, **params: str) -> dict[str, Any]:
    response = api.client.get(PATH, params=params, headers=api.admin())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def alert_count(api: Api) -> int:
    response = api.client.get("/admin/alerts", headers=api.admin())
    assert response.status_code == 200, response.text
    return len(response.json()["data"])


# -- the figures ------------------------------------------------------------------------------


def test_a_day_bucket_counts_succeeded_failed_and_abandoned_apart(api: Api) -> None:
    at(api, datetime(2026, 3, 10, 10, 0, tzinfo=UTC))
    one = paid(api, "ana", diamonds=200)  # 2000 paise
    two = paid(api, "ana", diamonds=400)  # 4000 paise
    lost = failed(api, "ben", diamonds=600)  # 6000 paise
    topup(api, "cy", diamonds=200)  # never attempted: abandoned
    pending = topup(api, "cy", diamonds=200)
    assert (
        webhook(
            api, "payment.processing", provider_order_id=pending["provider_order_id"]
        ).status_code
        == 200
    )
    body = report(api, **MARCH)
    assert body["group_by"] == "day" and body["tz"] == "UTC"
    [bucket] = body["buckets"]
    volume = one["amount"] + two["amount"]
    assert bucket == {
        "start": "2026-03-10T00:00:00Z",
        "currency": "INR",
        "count": 5,
        "abandoned": 1,
        "pending": 1,
        "succeeded": 2,
        "failed": 1,
        "success_rate": pytest.approx(2 / 3),
        "success_rate_by_volume": pytest.approx(volume / (volume + lost["amount"])),
        "volume": volume,
        "average_order_value": volume // 2,
    }
    assert body["failure_reasons"] == [{"code": "card declined", "count": 1, "share": 1.0}]
    assert body["first_attempt_delivery_rate"] is None  # no outbound attempts
    assert_books_clean(api)


def test_one_row_per_currency_and_the_currency_and_provider_filters(api: Api) -> None:
    at(api, datetime(2026, 3, 10, 10, 0, tzinfo=UTC))
    inr = paid(api, "ana", diamonds=200)
    usd = paid(api, "ana", diamonds=800, currency="USD")
    body = report(api, **MARCH)
    rows = {(b["currency"], b["volume"], b["average_order_value"]) for b in body["buckets"]}
    assert rows == {("INR", inr["amount"], inr["amount"]), ("USD", usd["amount"], usd["amount"])}
    only_usd = report(api, **MARCH, currency="USD")["buckets"]
    assert [(b["currency"], b["volume"]) for b in only_usd] == [("USD", usd["amount"])]
    assert len(report(api, **MARCH, provider="mock")["buckets"]) == 2
    assert report(api, **MARCH, provider="stripe")["buckets"] == []
    # The range filter: the orders are outside April.
    assert report(api, **{"from": "2026-04-01", "to": "2026-05-01"})["buckets"] == []


@pytest.mark.parametrize(
    ("group_by", "starts"),
    [
        ("day", ["2026-03-10T00:00:00Z", "2026-03-12T00:00:00Z", "2026-04-02T00:00:00Z"]),
        ("week", ["2026-03-09T00:00:00Z", "2026-03-30T00:00:00Z"]),
        ("month", ["2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"]),
    ],
)
def test_group_by_day_week_month(api: Api, group_by: str, starts: list[str]) -> None:
    for moment in (
        datetime(2026, 3, 10, 9, tzinfo=UTC),  # a Tuesday
        datetime(2026, 3, 12, 9, tzinfo=UTC),  # the Thursday of the same week
        datetime(2026, 4, 2, 9, tzinfo=UTC),  # a Thursday, the next month
    ):
        at(api, moment)
        paid(api, "ana")
    buckets = report(api, **MARCH, group_by=group_by)["buckets"]
    assert [b["start"] for b in buckets] == starts
    assert sum(b["count"] for b in buckets) == 3


def test_the_time_zone_moves_an_order_across_a_day_boundary(api: Api) -> None:
    at(api, datetime(2026, 3, 10, 20, 0, tzinfo=UTC))  # 01:30 on the 11th in Kolkata
    paid(api, "ana")
    utc = report(api, **MARCH)["buckets"]
    assert [b["start"] for b in utc] == ["2026-03-10T00:00:00Z"]
    kolkata = report(api, **MARCH, tz="Asia/Kolkata")
    assert kolkata["tz"] == "Asia/Kolkata"
    assert [b["start"] for b in kolkata["buckets"]] == ["2026-03-11T00:00:00+05:30"]
    # A zone behind UTC keeps it on the 10th; the local Monday and 1st carry the local offset.
    new_york = report(api, **MARCH, tz="America/New_York", group_by="week")["buckets"]
    assert [b["start"] for b in new_york] == ["2026-03-09T00:00:00-04:00"]
    month = report(api, **MARCH, tz="America/New_York", group_by="month")["buckets"]
    assert [b["start"] for b in month] == ["2026-03-01T00:00:00-05:00"]
    # A plain date in from/to is the local midnight: the 11th in Kolkata holds the order.
    eleventh = {"from": "2026-03-11", "to": "2026-03-12"}
    assert report(api, **eleventh)["buckets"] == []
    local = report(api, **eleventh, tz="Asia/Kolkata")
    assert local["start"] == "2026-03-10T18:30:00Z" and len(local["buckets"]) == 1


def test_failure_reasons_with_their_shares(api: Api) -> None:
    at(api, datetime(2026, 3, 10, 10, 0, tzinfo=UTC))
    for _ in range(3):
        failed(api, "ana", "card declined")
    failed(api, "ben", "insufficient funds")
    paid(api, "cy")
    body = report(api, **MARCH)
    assert body["failure_reasons"] == [
        {"code": "card declined", "count": 3, "share": 0.75},
        {"code": "insufficient funds", "count": 1, "share": 0.25},
    ]
    assert sum(b["failed"] for b in body["buckets"]) == 4


def test_webhook_latency_percentiles(api: Api) -> None:
    order = topup(api, "ana", diamonds=200)
    response = webhook(
        api,
        "payment.succeeded",
        provider_order_id=order["provider_order_id"],
        payment_id="mock_pay_latency",
        amount=order["amount"],
        currency="INR",
    )
    assert response.status_code == 200, response.text
    latency = report(api)["webhook_latency_ms"]  # the default range: the last 30 days
    assert latency["count"] == 1
    # The mock dates its event in whole seconds: at most a second (and the test's time) ago.
    assert 0 <= latency["p50"] == latency["p95"] == latency["p99"] < 60_000


def test_analytics_volume_equals_what_the_ledger_credited(api: Api) -> None:
    start = utc_now() - timedelta(seconds=1)
    orders = [paid(api, "ana", diamonds=200), paid(api, "ben", diamonds=1_000)]
    orders.append(paid(api, "ana", diamonds=800, currency="USD"))
    failed(api, "cy")
    topup(api, "cy")  # abandoned
    end = utc_now() + timedelta(seconds=1)
    span = {"from": start.isoformat(), "to": end.isoformat()}
    volume: dict[str, int] = {}
    for bucket in report(api, **span)["buckets"]:
        volume[bucket["currency"]] = volume.get(bucket["currency"], 0) + bucket["volume"]
    credited: dict[str, int] = {}
    with api.database.unit_of_work() as session:
        for currency in ("INR", "USD"):
            revenue = platform_account(session, kind="revenue", asset=currency)
            totals = ledger.totals_by_type(
                session, account_ids=[revenue.id], created_from=start, created_to=end
            )
            credited[currency] = sum(t.credits for t in totals if t.type == "purchase")
    assert volume == credited
    assert credited["INR"] == orders[0]["amount"] + orders[1]["amount"]
    assert_books_clean(api)


# -- who may ask, and what is refused ---------------------------------------------------------


def test_only_an_admin_key_may_read_it(api: Api) -> None:
    assert_error(api.client.get(PATH, headers=api.user("ana")), 403, "forbidden")
    assert_error(api.client.get(PATH, headers=api.service()), 403, "forbidden")
    assert_error(api.client.get(PATH), 401, "unauthenticated")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"tz": "Mars/Olympus_Mons"}, "query.tz"),
        ({"tz": "../../etc/passwd"}, "query.tz"),
        ({"group_by": "hour"}, "query.group_by"),
        ({"from": "2025-01-01", "to": "2026-03-01"}, "query.from"),  # over 366 days
        ({"from": "2026-03-02", "to": "2026-03-01"}, "query.to"),  # backwards
        ({"from": "yesterday"}, "query.from"),
    ],
)
def test_bad_inputs_are_422_and_change_nothing(
    api: Api, params: dict[str, str], field: str
) -> None:
    at(api, datetime(2026, 3, 10, 10, 0, tzinfo=UTC))
    paid(api, "ana")
    before = report(api, **MARCH)
    response = api.client.get(PATH, params=params, headers=api.admin())
    assert field in error_fields(response)
    assert report(api, **MARCH) == before
    assert alert_count(api) == 0


# -- the floor alert --------------------------------------------------------------------------


def floor_check(api: Api, writer: Writer | None = None) -> str:
    settings = api.coffer.settings
    seen = check_success_floor(
        api.database,
        writer or api.coffer._writer(),
        utc_now,
        floor=settings.payment_success_floor,
        window_s=settings.payment_success_window_s,
        attempts_min=settings.payment_success_attempts_min,
    )
    return seen.outcome


def alert_events(api: Api) -> int:
    with api.database.read() as session:
        return int(
            session.execute(
                select(func.count()).select_from(events).where(events.c.type == "alert.raised")
            ).scalar_one()
        )


def test_the_floor_alert_fires_once_per_crossing(api: Api) -> None:
    endpoint = api.client.post(
        "/admin/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/hook", "events": ["alert.raised"]},
        headers=api.admin(),
    )
    assert endpoint.status_code == 201, endpoint.text  # the host app may subscribe to alerts
    failed(api, "ana")
    assert floor_check(api) == "too_few_attempts"  # 1 failure of 1 is no signal
    paid(api, "ana")
    failed(api, "ben")
    failed(api, "ben")
    assert floor_check(api) == "fired"  # 1 of 4
    [alert] = api.client.get("/admin/alerts", headers=api.admin()).json()["data"]
    assert alert["kind"] == "payments.success_rate_below_floor"
    assert alert["details"]["attempts"] == 4 and alert["details"]["rate"] == 0.25
    assert alert_events(api) == 1
    assert floor_check(api) == "unchanged"  # still below: no second alert
    assert (alert_count(api), alert_events(api)) == (1, 1)
    for _ in range(36):  # 37 of 40: 92.5 %
        paid(api, "cy")
    assert floor_check(api) == "recovered"
    [resolved] = api.client.get("/admin/alerts", headers=api.admin()).json()["data"]
    assert resolved["id"] == alert["id"] and resolved["resolved_at"] is not None
    assert floor_check(api) == "unchanged"
    assert alert_count(api) == 1
    for _ in range(4):  # 37 of 44: 84 %
        failed(api, "dee")
    assert floor_check(api) == "fired"
    assert (alert_count(api), alert_events(api)) == (2, 2)
    newest, oldest = api.client.get("/admin/alerts", headers=api.admin()).json()["data"]
    assert newest["resolved_at"] is None and oldest["resolved_at"] is not None
    with api.database.read() as session:
        state = session.execute(select(alert_states)).one()
    assert state.state == "firing" and state.attempts == 44


def test_two_processes_checking_at_once_fire_once(api: Api) -> None:
    paid(api, "ana")
    for _ in range(4):
        failed(api, "ben")
    # Two writers of their own, as two processes would have.
    writers = [Writer(api.database, group_commit=False) for _ in range(2)]
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def run(writer: Writer) -> None:
        start.wait()
        outcomes.append(floor_check(api, writer))

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for writer in writers:
            writer.close()
    assert sorted(outcomes) == ["fired", "unchanged"]
    assert (alert_count(api), alert_events(api)) == (1, 1)
