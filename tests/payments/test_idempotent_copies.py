"""Issue 7 item 5: idempotency under retries and copies.

Copies of one request (same Idempotency-Key, same body) arrive together from real threads
through the app; a retry follows a crash between the provider's answer and our commit; refunds
race under one key; a signed Razorpay event comes back under another event-id header. Each ends
in one order, one refund, one processing, and only 2xx (or a 409) answers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from sqlalchemy import func, select

from coffer import idempotency
from coffer.api.app import API_PREFIX
from coffer.db import Database
from coffer.payments import flows
from coffer.payments.tables import payment_orders, refunds
from coffer.webhooks.tables import inbox
from tests.api.harness import Api, assert_error, make_api
from tests.fakes.razorpay_api import RazorpayFake
from tests.fakes.stripe_api import StripeFake
from tests.payments.helpers import assert_books_clean, paid_topup, wallet_balance

COPIES = 16
TOPUP = {"package_id": "popular", "provider": "stripe"}


def _count(database: Database, table: Any) -> int:
    with database.read() as session:
        return int(session.execute(select(func.count()).select_from(table)).scalar_one())


def _together(count: int, send: Callable[[], httpx.Response]) -> list[httpx.Response]:
    barrier = threading.Barrier(count)

    def one(_: int) -> httpx.Response:
        barrier.wait()
        return send()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_item5_parallel_stripe_topups_with_one_key_open_one_order(
    db: Database, stripe_fake: StripeFake
) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        headers = {**api.user("asha"), "Idempotency-Key": "topup-copies-1"}
        responses = _together(
            COPIES, lambda: api.client.post("/wallet/topup", json=TOPUP, headers=headers)
        )
        assert [r.status_code for r in responses] == [201] * COPIES, [r.text for r in responses]
        assert len({r.content for r in responses}) == 1  # every copy got the one answer
        order = responses[0].json()["order"]
        assert list(stripe_fake.payment_intents) == [order["provider_order_id"]]
        assert _count(api.database, payment_orders) == 1
        # ... and the one order is payable: the Stripe webhook credits it once.
        paid = stripe_fake.succeed_payment(order["provider_order_id"])
        response = api.client.post("/webhooks/stripe", content=paid.body, headers=paid.headers)
        assert response.status_code == 200, response.text
        assert wallet_balance(api, "asha") == 600
        assert_books_clean(api)


def test_item5_retry_after_a_crash_between_stripe_and_the_commit_gets_the_same_order(
    db: Database, stripe_fake: StripeFake
) -> None:
    with make_api(db, **stripe_fake.settings_values()) as api:
        key = "topup-crash-1"
        # The first attempt: Stripe opened the PaymentIntent, then the process died before the
        # order and the key were committed (prepare_topup ran; its result was never recorded).
        app = api.coffer.app
        lost = flows.prepare_topup(
            app.state.providers,
            api.coffer.settings.shop,
            user_id="ben",
            package_id="popular",
            diamonds=None,
            currency=None,
            provider_name="stripe",
            default_provider=api.coffer.settings.default_provider,
            request_key=key,
            request_fingerprint=idempotency.fingerprint(
                method="POST",
                path=f"{API_PREFIX}/wallet/topup",
                query="",
                body=json.dumps(TOPUP).encode(),
            ),
        )
        assert _count(api.database, payment_orders) == 0
        retry = api.client.post(
            "/wallet/topup", json=TOPUP, headers={**api.user("ben"), "Idempotency-Key": key}
        )
        assert retry.status_code == 201, retry.text
        order = retry.json()["order"]
        assert order["id"] == lost.order_id
        assert order["provider_order_id"] == lost.provider_order.provider_order_id
        assert list(stripe_fake.payment_intents) == [order["provider_order_id"]]
        # Another body under the same key is a conflict, not a provider error.
        other = api.client.post(
            "/wallet/topup",
            json={**TOPUP, "package_id": "starter"},
            headers={**api.user("ben"), "Idempotency-Key": key},
        )
        assert_error(other, 409, "idempotency_conflict")
        assert _count(api.database, payment_orders) == 1


def test_item5_record_order_twice_for_one_id_returns_the_first(api: Api) -> None:
    """Copies that reach `record_order` with one id (e.g. after the key's record was purged):
    the first inserts, the next gets that order back, never a unique violation."""
    prepared = flows.prepare_topup(
        api.coffer.app.state.providers,
        api.coffer.settings.shop,
        user_id="cai",
        package_id="popular",
        diamonds=None,
        currency=None,
        provider_name="mock",
        default_provider="mock",
        request_key="purged-key",
    )
    from coffer.kit.clock import utc_now

    with api.database.unit_of_work() as session:
        first = prepared.record(session, now=utc_now())
    with api.database.unit_of_work() as session:
        second = prepared.record(session, now=utc_now())
    assert second == first
    assert _count(api.database, payment_orders) == 1


def test_item5_parallel_refunds_with_one_key_make_one_refund(api: Api) -> None:
    order = paid_topup(api, "dev")
    headers = {**api.admin(), "Idempotency-Key": "refund-copies-1"}
    responses = _together(
        COPIES,
        lambda: api.client.post(
            f"/admin/payment-orders/{order['id']}/refund",
            json={"amount": 4_490, "reason": "copies"},
            headers=headers,
        ),
    )
    assert [r.status_code for r in responses] == [201] * COPIES, [r.text for r in responses]
    assert len({r.json()["refund"]["id"] for r in responses}) == 1
    assert _count(api.database, refunds) == 1
    assert wallet_balance(api, "dev") == 540
    # The same key with another body is a 409 and refunds nothing more.
    other = api.client.post(
        f"/admin/payment-orders/{order['id']}/refund",
        json={"amount": 100, "reason": "copies"},
        headers=headers,
    )
    assert_error(other, 409, "idempotency_conflict")
    assert _count(api.database, refunds) == 1
    assert_books_clean(api)


def test_item5_a_signed_razorpay_event_under_a_new_event_id_header_is_processed_once(
    db: Database, razorpay_fake: RazorpayFake
) -> None:
    with make_api(db, **razorpay_fake.settings_values()) as api:
        response = api.client.post(
            "/wallet/topup",
            json={"package_id": "popular", "provider": "razorpay"},
            headers=api.user("eva"),
        )
        assert response.status_code == 201, response.text
        razorpay_fake.pay_order(response.json()["order"]["provider_order_id"])
        captured = razorpay_fake.webhook("payment.captured")
        first = api.client.post(
            "/webhooks/razorpay", content=captured.body, headers=captured.headers
        )
        assert first.status_code == 200 and first.json()["duplicate"] is False, first.text
        replayed = api.client.post(
            "/webhooks/razorpay",
            content=captured.body,
            headers={**captured.headers, "X-Razorpay-Event-Id": "evt_attacker0001"},
        )
        assert replayed.status_code == 200 and replayed.json()["duplicate"] is True
        assert _count(api.database, inbox) == 1
        assert wallet_balance(api, "eva") == 600
        assert_books_clean(api)
