"""The webhook inbox: stored once, processed once, retried with backoff, parked when hopeless."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from coffer import idempotency, ledger, wallets
from coffer.config import DIAMOND
from coffer.kit.clock import utc_now
from coffer.payments import refunds
from coffer.payments.tables import payment_orders
from coffer.webhooks import flows
from coffer.webhooks.tables import inbox
from tests.api.harness import Api
from tests.payments.helpers import (
    assert_books_clean,
    paid_topup,
    topup,
    wallet_balance,
    webhook,
)


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


def test_background_jobs_run(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    """Each job the server runs finds its work and does it: an expired hold, a webhook due
    for retry, a refund left unsent, an idempotency key past retention (issue 7 item 10)."""
    long_ago = utc_now() - timedelta(days=3)
    with api.database.unit_of_work() as session:
        # The ledger's first transfer (its clock never runs backwards): a hold long expired.
        wallet = wallets.wallet_account(session, "jobs-hold", DIAMOND)
        issuance = wallets.system_account(session, kind="issuance", asset=DIAMOND)
        hold = ledger.create_hold(
            session,
            debit_account_id=issuance.id,
            credit_account_id=wallet.id,
            amount=50,
            type="adjustment",
            timeout_s=1,
            now=long_ago,
        )
    paid = paid_topup(api, "jobs")
    with api.database.unit_of_work() as session:
        refund, _ = refunds.begin_refund(
            session,
            order_id=paid["id"],
            amount=4_490,
            reason="left unsent by a crash",
            force=False,
            actor="test",
            idempotency_key=None,
            now=long_ago,
        )
        idempotency.claim(
            session,
            scope="user:jobs",
            key="old-key",
            fingerprint=b"f" * 32,
            method="POST",
            path="/x",
            now=long_ago,
        )
        idempotency.record_response(
            session, scope="user:jobs", key="old-key", status_code=201,
            content_type="application/json", body=b"{}",
        )  # fmt: skip
    order = topup(api, "jobs")
    webhook(
        api,
        "payment.succeeded",
        provider_order_id=order["provider_order_id"] + "-renamed",
        amount=order["amount"],
        currency="INR",
        event_id="due-1",
    )
    with api.database.unit_of_work() as session:
        session.execute(  # the order is known now, and its retry time has come
            update(payment_orders)
            .where(payment_orders.c.id == order["id"])
            .values(provider_order_id=order["provider_order_id"] + "-renamed")
        )
        session.execute(
            update(inbox).where(inbox.c.event_id == "due-1").values(next_attempt_at=long_ago)
        )

    with caplog.at_level(logging.ERROR, logger="coffer.kit.periodic"):
        api.coffer.background().run_all_now()

    assert not [r for r in caplog.records if r.name == "coffer.kit.periodic"], caplog.text
    with api.database.read() as session:
        assert ledger.get_hold(session, hold.id).status == ledger.HoldStatus.EXPIRED
        assert refunds.get_refund(session, refund.id).status == "succeeded"
        assert idempotency.find(session, scope="user:jobs", key="old-key") is None
    assert _row(api, "due-1").status == "processed"
    assert wallet_balance(api, "jobs") == 600 - 60 + 600  # a tenth refunded, the order paid
    assert_books_clean(api)
