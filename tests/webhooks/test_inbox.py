"""The webhook inbox: stored once, processed once, retried with backoff, parked when hopeless."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from coffer.kit.clock import utc_now
from coffer.webhooks import flows
from coffer.webhooks.tables import inbox
from tests.api.harness import Api
from tests.payments.helpers import assert_books_clean, topup, wallet_balance, webhook


def _row(api: Api, event_id: str):  # type: ignore[no-untyped-def]
    with api.database.read() as session:
        return session.execute(select(inbox).where(inbox.c.event_id == event_id)).one()


def test_event_for_an_order_not_yet_known_is_retried_until_it_applies(api: Api) -> None:
    order = topup(api, "alice")
    response = webhook(
        api,
        "payment.succeeded",
        provider_order_id="mock_order_not_yet",
        amount=order["amount"],
        currency="INR",
        event_id="early-1",
    )
    assert response.status_code == 200
    row = _row(api, "early-1")
    assert (row.status, row.attempts) == ("received", 1)
    assert row.next_attempt_at > row.received_at and "no order" in row.last_error
    # Nothing is due yet; later the order exists (here: renamed to the id the event names).
    assert flows.retry_due(api.database, utc_now) == 0
    from sqlalchemy import update

    from coffer.payments.tables import payment_orders

    with api.database.unit_of_work() as session:
        session.execute(
            update(payment_orders)
            .where(payment_orders.c.id == order["id"])
            .values(provider_order_id="mock_order_not_yet")
        )
    later = lambda: utc_now() + timedelta(minutes=5)  # noqa: E731
    assert flows.retry_due(api.database, later) == 1
    assert _row(api, "early-1").status == "processed"
    assert wallet_balance(api, "alice") == 600
    assert flows.retry_due(api.database, later) == 0
    assert_books_clean(api)


def test_hopeless_event_is_parked_and_unknown_types_ignored(api: Api) -> None:
    order = topup(api, "bob")
    webhook(
        api,
        "payment.succeeded",
        provider_order_id=order["provider_order_id"],
        amount=5,
        currency="INR",
        event_id="bad-amount",
    )
    row = _row(api, "bad-amount")
    assert row.status == "failed" and "amount" in row.last_error
    webhook(api, "customer.created", event_id="other-1")
    assert _row(api, "other-1").status == "ignored"
    assert wallet_balance(api, "bob") == 0


def test_background_jobs_run(api: Api) -> None:
    api.coffer.background().run_all_now()
