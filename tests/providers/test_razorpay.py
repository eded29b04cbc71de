"""The Razorpay adapter end to end: the official SDK over HTTP against the local fake."""

from __future__ import annotations

import json

import pytest
import razorpay

from coffer.errors import InvalidSignature, ProviderDisabled, ProviderRejected, ProviderUnavailable
from coffer.providers import EventKind, OrderRequest, PayoutRequest, Provider, RazorpayProvider
from tests.fakes._http import Request, Response, refused_url
from tests.fakes.razorpay_api import RazorpayFake

AMOUNT = 49_900  # ₹499.00 in paise


def open_order(
    provider: RazorpayProvider, *, order_id: str = "po_rzp_1", amount: int = AMOUNT
) -> str:
    return provider.create_order(
        OrderRequest(order_id=order_id, amount=amount, currency="INR", customer_id="u_1")
    ).provider_order_id


def paid_order(
    provider: RazorpayProvider, fake: RazorpayFake, **options: object
) -> tuple[str, str]:
    """An order the customer paid; returns (order id, payment id)."""
    order_id = open_order(provider)
    paid = fake.pay_order(order_id, **options)  # type: ignore[arg-type]
    return order_id, paid.payment_id


def test_the_adapter_is_a_provider(razorpay_provider: RazorpayProvider) -> None:
    assert isinstance(razorpay_provider, Provider)
    assert razorpay_provider.public_config() == {"key_id": RazorpayFake.key_id}


# -- orders and checkout --------------------------------------------------------------------------


def test_create_order(razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake) -> None:
    order = razorpay_provider.create_order(
        OrderRequest(order_id="po_rzp_1", amount=AMOUNT, currency="INR", customer_id="u_1")
    )
    assert order.provider == "razorpay" and order.provider_order_id.startswith("order_")
    assert order.checkout == {
        "key_id": RazorpayFake.key_id,
        "order_id": order.provider_order_id,
        "amount": AMOUNT,
        "currency": "INR",
    }
    stored = razorpay_fake.orders[order.provider_order_id]
    assert (stored["amount"], stored["currency"], stored["receipt"]) == (AMOUNT, "INR", "po_rzp_1")
    assert stored["notes"] == {"order_id": "po_rzp_1", "customer_id": "u_1"}


def test_verify_a_captured_payment(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    order_id = open_order(razorpay_provider)
    paid = razorpay_fake.pay_order(order_id)
    confirmation = razorpay_provider.verify_payment(
        provider_order_id=order_id,
        payment_id=paid.payment_id,
        signature=paid.signature,
        amount=AMOUNT,
        currency="INR",
    )
    assert (confirmation.payment_id, confirmation.amount, confirmation.currency) == (
        paid.payment_id,
        AMOUNT,
        "INR",
    )


def test_checkout_signature_agrees_with_the_sdk(razorpay_fake: RazorpayFake) -> None:
    client = razorpay.Client(auth=(RazorpayFake.key_id, RazorpayFake.key_secret))
    signature = razorpay_fake.checkout_signature("order_X", "pay_Y")
    assert client.utility.verify_payment_signature(
        {
            "razorpay_order_id": "order_X",
            "razorpay_payment_id": "pay_Y",
            "razorpay_signature": signature,
        }
    )


def test_verify_captures_an_authorised_payment(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    order_id = open_order(razorpay_provider)
    paid = razorpay_fake.pay_order(order_id, capture=False)
    assert razorpay_fake.payments[paid.payment_id]["status"] == "authorized"
    razorpay_provider.verify_payment(
        provider_order_id=order_id,
        payment_id=paid.payment_id,
        signature=paid.signature,
        amount=AMOUNT,
        currency="INR",
    )
    assert razorpay_fake.payments[paid.payment_id]["status"] == "captured"


def test_verify_survives_losing_the_capture_race(
    razorpay_provider: RazorpayProvider,
    razorpay_fake: RazorpayFake,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Razorpay's auto-capture lands between our read (authorized) and our capture call.
    order_id = open_order(razorpay_provider)
    paid = razorpay_fake.pay_order(order_id, capture=False)
    handle = razorpay_fake.handle

    def auto_capture_first(request: Request) -> Response:
        if request.path.endswith("/capture"):
            with razorpay_fake.lock:
                razorpay_fake._capture(razorpay_fake.payments[paid.payment_id])
        return handle(request)

    monkeypatch.setattr(razorpay_fake, "handle", auto_capture_first)
    confirmation = razorpay_provider.verify_payment(
        provider_order_id=order_id,
        payment_id=paid.payment_id,
        signature=paid.signature,
        amount=AMOUNT,
        currency="INR",
    )
    assert confirmation.payment_id == paid.payment_id
    paths = [r.path for r in razorpay_fake.requests]
    assert paths[-3:] == [
        f"/v1/payments/{paid.payment_id}",
        f"/v1/payments/{paid.payment_id}/capture",
        f"/v1/payments/{paid.payment_id}",
    ]


def test_a_bad_signature_is_refused_before_any_call(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    order_id = open_order(razorpay_provider)
    paid = razorpay_fake.pay_order(order_id)
    calls = len(razorpay_fake.requests)
    with pytest.raises(InvalidSignature):
        razorpay_provider.verify_payment(
            provider_order_id=order_id,
            payment_id=paid.payment_id,
            signature=paid.signature[:-1] + ("0" if paid.signature[-1] != "0" else "1"),
            amount=AMOUNT,
            currency="INR",
        )
    assert len(razorpay_fake.requests) == calls


def test_a_failed_payment_with_a_valid_signature_is_not_confirmed(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    order_id = open_order(razorpay_provider)
    payment_id = razorpay_fake.fail_order(order_id)
    with pytest.raises(ProviderRejected, match="failed"):
        razorpay_provider.verify_payment(
            provider_order_id=order_id,
            payment_id=payment_id,
            signature=razorpay_fake.checkout_signature(order_id, payment_id),
            amount=AMOUNT,
            currency="INR",
        )


def test_an_amount_other_than_the_payments_is_refused(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    order_id, payment_id = paid_order(razorpay_provider, razorpay_fake)
    with pytest.raises(ProviderRejected, match="amount"):
        razorpay_provider.verify_payment(
            provider_order_id=order_id,
            payment_id=payment_id,
            signature=razorpay_fake.checkout_signature(order_id, payment_id),
            amount=AMOUNT + 100,
            currency="INR",
        )


# -- webhooks -------------------------------------------------------------------------------------


def test_payment_webhooks(razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake) -> None:
    order_id, payment_id = paid_order(razorpay_provider, razorpay_fake)
    expected = {
        "payment.authorized": EventKind.PAYMENT_PROCESSING,
        "payment.captured": EventKind.PAYMENT_SUCCEEDED,
        "order.paid": EventKind.PAYMENT_SUCCEEDED,
    }
    for name, kind in expected.items():
        delivery = razorpay_fake.webhook(name)
        event = razorpay_provider.parse_webhook(body=delivery.body, headers=delivery.headers)
        assert (event.kind, event.provider_type) == (kind, name)
        # Named by what the signature covers, never by the unsigned event-id header.
        assert event.event_id.startswith("rzp:")
        assert delivery.headers["X-Razorpay-Event-Id"] not in event.event_id
        assert (event.provider_order_id, event.payment_id) == (order_id, payment_id)
        assert (event.amount, event.currency) == (AMOUNT, "INR")
        assert event.occurred_at is not None


def test_a_failed_payment_may_be_captured_later(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    order_id = open_order(razorpay_provider)
    payment_id = razorpay_fake.fail_order(order_id, description="Bank timed out")
    failed = razorpay_fake.webhook("payment.failed")
    event = razorpay_provider.parse_webhook(body=failed.body, headers=failed.headers)
    assert (event.kind, event.payment_id, event.failure_reason) == (
        EventKind.PAYMENT_FAILED,
        payment_id,
        "Bank timed out",
    )
    razorpay_fake.capture_late(payment_id)
    captured = razorpay_fake.webhook("payment.captured")
    later = razorpay_provider.parse_webhook(body=captured.body, headers=captured.headers)
    assert (later.kind, later.payment_id, later.provider_order_id) == (
        EventKind.PAYMENT_SUCCEEDED,
        payment_id,
        order_id,
    )
    assert later.event_id != event.event_id


def test_the_sdk_accepts_the_fakes_webhooks(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    paid_order(razorpay_provider, razorpay_fake)
    delivery = razorpay_fake.webhook("order.paid")
    client = razorpay.Client(auth=(RazorpayFake.key_id, RazorpayFake.key_secret))
    assert client.utility.verify_webhook_signature(
        delivery.body.decode(),
        delivery.headers["X-Razorpay-Signature"],
        RazorpayFake.webhook_secret,
    )


def test_forged_tampered_or_reserialised_webhooks_are_refused(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    paid_order(razorpay_provider, razorpay_fake)
    good = razorpay_fake.webhook("payment.captured")
    forged = razorpay_fake.webhook("payment.captured", secret=RazorpayFake.key_secret)
    reserialised = json.dumps(json.loads(good.body), indent=2).encode()
    for body, headers in [
        (forged.body, forged.headers),
        (good.body.replace(b'"captured"', b'"failed"'), good.headers),
        (reserialised, good.headers),
        (good.body, {"X-Razorpay-Event-Id": "evt_1"}),
    ]:
        with pytest.raises(InvalidSignature):
            razorpay_provider.parse_webhook(body=body, headers=headers)


def test_webhooks_are_off_without_their_secret(razorpay_fake: RazorpayFake) -> None:
    provider = RazorpayProvider(**razorpay_fake.provider_options(webhook_secret=None))
    with pytest.raises(ProviderDisabled, match="COFFER_RAZORPAY_WEBHOOK_SECRET"):
        provider.parse_webhook(body=b"{}", headers={"X-Razorpay-Signature": "00"})


def test_an_event_is_named_by_its_signed_body_not_the_id_header(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    paid_order(razorpay_provider, razorpay_fake)
    delivery = razorpay_fake.webhook("payment.captured")
    headers = {k: v for k, v in delivery.headers.items() if k != "X-Razorpay-Event-Id"}
    first = razorpay_provider.parse_webhook(body=delivery.body, headers=headers)
    relabelled = razorpay_provider.parse_webhook(
        body=delivery.body, headers={**headers, "X-Razorpay-Event-Id": "evt_replayed"}
    )
    assert first.event_id == relabelled.event_id
    # A later event about the same payment is another event.
    order_paid = razorpay_fake.webhook("order.paid")
    other = razorpay_provider.parse_webhook(body=order_paid.body, headers=order_paid.headers)
    assert other.event_id != first.event_id
    # An event with no entity ids is named by its bytes.
    bare = razorpay_fake.sign({"event": "account.updated", "payload": {}, "created_at": 1})
    named = razorpay_provider.parse_webhook(body=bare.body, headers=bare.headers)
    assert named.event_id.startswith("sha256:")


# -- refunds --------------------------------------------------------------------------------------


def test_partial_then_full_refund(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    _, payment_id = paid_order(razorpay_provider, razorpay_fake)
    partial = razorpay_provider.refund(
        payment_id=payment_id,
        amount=10_000,
        currency="INR",
        idempotency_key="rf_part_0001",
        reason="partial",
    )
    assert (partial.status, partial.amount, partial.currency, partial.payment_id) == (
        "succeeded",
        10_000,
        "INR",
        payment_id,
    )
    assert razorpay_fake.payments[payment_id]["refund_status"] == "partial"
    rest = razorpay_provider.refund(
        payment_id=payment_id,
        amount=AMOUNT - 10_000,
        currency="INR",
        idempotency_key="rf_rest_0001",
        reason="rest",
    )
    assert rest.refund_id != partial.refund_id
    assert razorpay_fake.payments[payment_id]["status"] == "refunded"
    assert razorpay_fake.payments[payment_id]["refund_status"] == "full"
    delivery = razorpay_fake.webhook("refund.processed")
    event = razorpay_provider.parse_webhook(body=delivery.body, headers=delivery.headers)
    assert (event.kind, event.refund_id, event.payment_id, event.amount) == (
        EventKind.REFUND_SUCCEEDED,
        rest.refund_id,
        payment_id,
        AMOUNT - 10_000,
    )
    with pytest.raises(ProviderRejected, match="fully refunded"):
        razorpay_provider.refund(
            payment_id=payment_id,
            amount=100,
            currency="INR",
            idempotency_key="rf_more_0001",
            reason="",
        )


def test_a_refund_is_idempotent_by_key(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    _, payment_id = paid_order(razorpay_provider, razorpay_fake)
    first = razorpay_provider.refund(
        payment_id=payment_id, amount=5_000, currency="INR", idempotency_key="rf_same", reason="x"
    )
    again = razorpay_provider.refund(
        payment_id=payment_id, amount=5_000, currency="INR", idempotency_key="rf_same", reason="x"
    )
    assert first == again
    assert len(razorpay_fake.refunds) == 1
    sent = [
        r.headers.get("x-refund-idempotency")
        for r in razorpay_fake.requests
        if r.path.endswith("/refund")
    ]
    assert len(sent) == 2 and sent[0] == sent[1] and len(sent[0] or "") >= 10
    with pytest.raises(ProviderRejected, match="idempotency key"):
        razorpay_provider.refund(
            payment_id=payment_id,
            amount=6_000,
            currency="INR",
            idempotency_key="rf_same",
            reason="x",
        )


def test_refunding_more_than_was_paid_is_refused(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    _, payment_id = paid_order(razorpay_provider, razorpay_fake)
    with pytest.raises(ProviderRejected, match="greater than"):
        razorpay_provider.refund(
            payment_id=payment_id,
            amount=AMOUNT + 1,
            currency="INR",
            idempotency_key="rf_big_0001",
            reason="",
        )


def test_a_failed_refund_webhook(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    _, payment_id = paid_order(razorpay_provider, razorpay_fake)
    refund = razorpay_provider.refund(
        payment_id=payment_id,
        amount=1_000,
        currency="INR",
        idempotency_key="rf_fail_001",
        reason="",
    )
    razorpay_fake.fail_refund(refund.refund_id)
    delivery = razorpay_fake.webhook("refund.failed")
    event = razorpay_provider.parse_webhook(body=delivery.body, headers=delivery.headers)
    assert (event.kind, event.refund_id) == (EventKind.REFUND_FAILED, refund.refund_id)
    created = razorpay_fake.webhook("refund.created")
    assert (
        razorpay_provider.parse_webhook(body=created.body, headers=created.headers).kind
        is EventKind.IGNORED
    )


# -- payouts --------------------------------------------------------------------------------------

BANK = {
    "type": "bank_account",
    "name": "Asha Host",
    "ifsc": "HDFC0001234",
    "account_number": "50100012345678",
}


def test_payout_to_a_bank_account_then_paid(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    payout = razorpay_provider.payout(
        PayoutRequest(payout_id="pout_c1", amount=100_000, currency="INR", destination=BANK)
    )
    assert (payout.status, payout.amount, payout.currency) == ("processing", 100_000, "INR")
    stored = razorpay_fake.payouts[payout.payout_id]
    assert stored["reference_id"] == "pout_c1" and stored["mode"] == "IMPS"
    assert stored["fund_account"]["bank_account"]["ifsc"] == "HDFC0001234"
    sent = next(r for r in razorpay_fake.requests if r.path == "/v1/payouts")
    assert sent.headers["x-payout-idempotency"] == "pout_c1"
    razorpay_fake.process_payout(payout.payout_id)
    delivery = razorpay_fake.webhook("payout.processed")
    event = razorpay_provider.parse_webhook(body=delivery.body, headers=delivery.headers)
    assert (event.kind, event.payout_id, event.amount) == (
        EventKind.PAYOUT_PAID,
        payout.payout_id,
        100_000,
    )
    razorpay_fake.reverse_payout(payout.payout_id)
    delivery = razorpay_fake.webhook("payout.reversed")
    event = razorpay_provider.parse_webhook(body=delivery.body, headers=delivery.headers)
    assert (event.kind, event.failure_reason) == (
        EventKind.PAYOUT_REVERSED,
        "Beneficiary account is closed",
    )


def test_payout_to_a_vpa_that_fails(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    payout = razorpay_provider.payout(
        PayoutRequest(
            payout_id="pout_c2",
            amount=20_000,
            currency="INR",
            destination={"type": "vpa", "address": "asha@upi"},
        )
    )
    assert razorpay_fake.payouts[payout.payout_id]["mode"] == "UPI"
    razorpay_fake.fail_payout(payout.payout_id, reason="Beneficiary bank is offline")
    delivery = razorpay_fake.webhook("payout.failed")
    event = razorpay_provider.parse_webhook(body=delivery.body, headers=delivery.headers)
    assert (event.kind, event.payout_id, event.failure_reason) == (
        EventKind.PAYOUT_FAILED,
        payout.payout_id,
        "Beneficiary bank is offline",
    )
    initiated = razorpay_fake.webhook("payout.initiated")
    assert (
        razorpay_provider.parse_webhook(body=initiated.body, headers=initiated.headers).kind
        is EventKind.PAYOUT_PROCESSING
    )


def test_a_payout_is_idempotent_by_coffer_payout_id(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    request = PayoutRequest(payout_id="pout_same", amount=30_000, currency="INR", destination=BANK)
    assert razorpay_provider.payout(request) == razorpay_provider.payout(request)
    assert len(razorpay_fake.payouts) == 1
    long_id = PayoutRequest(payout_id="p" * 60, amount=30_000, currency="INR", destination=BANK)
    razorpay_provider.payout(long_id)  # a key Razorpay would refuse is replaced by a stable digest
    assert len(razorpay_fake.payouts) == 2


@pytest.mark.parametrize(
    "destination",
    [
        {"type": "bank_account", "name": "A", "ifsc": "HDFC0001234"},
        {"type": "vpa", "address": "nope"},
        {"type": "card"},
        {**BANK, "mode": "CHEQUE"},
    ],
)
def test_bad_payout_destinations_are_rejected_before_calling(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake, destination: dict[str, str]
) -> None:
    with pytest.raises(ProviderRejected):
        razorpay_provider.payout(
            PayoutRequest(
                payout_id="pout_bad", amount=20_000, currency="INR", destination=destination
            )
        )
    assert razorpay_fake.requests == []


def test_the_provider_refuses_what_it_finds_invalid(razorpay_provider: RazorpayProvider) -> None:
    with pytest.raises(ProviderRejected, match="IFSC"):
        razorpay_provider.payout(
            PayoutRequest(
                payout_id="pout_ifsc",
                amount=20_000,
                currency="INR",
                destination={**BANK, "ifsc": "BAD"},
            )
        )


def test_payouts_are_off_without_a_razorpayx_account(razorpay_fake: RazorpayFake) -> None:
    provider = RazorpayProvider(**razorpay_fake.provider_options(payout_account_number=None))
    with pytest.raises(ProviderDisabled, match="COFFER_RAZORPAY_PAYOUT_ACCOUNT_NUMBER"):
        provider.payout(
            PayoutRequest(payout_id="p1", amount=20_000, currency="INR", destination=BANK)
        )


# -- errors at the boundary -----------------------------------------------------------------------


def test_a_4xx_is_a_rejection(razorpay_provider: RazorpayProvider) -> None:
    with pytest.raises(ProviderRejected, match=r"atleast INR 1\.00"):
        razorpay_provider.create_order(OrderRequest(order_id="po_small", amount=50, currency="INR"))


def test_wrong_keys_are_a_rejection(razorpay_fake: RazorpayFake) -> None:
    provider = RazorpayProvider(**razorpay_fake.provider_options(key_secret="wrong"))
    with pytest.raises(ProviderRejected, match="Authentication failed"):
        open_order(provider)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_on_an_order_is_unavailable_and_not_retried(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake, status: int
) -> None:
    razorpay_fake.fail_next(status)
    with pytest.raises(ProviderUnavailable):
        open_order(razorpay_provider)
    assert len(razorpay_fake.requests) == 1  # Razorpay orders have no idempotency key
    assert razorpay_fake.orders == {}


def test_a_non_json_error_page_is_unavailable(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    razorpay_fake.fail_next(502, body="<html>Bad Gateway</html>")
    with pytest.raises(ProviderUnavailable):
        open_order(razorpay_provider)


def test_idempotent_calls_are_retried_through_a_5xx(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    razorpay_fake.fail_next(503, count=2)
    payout = razorpay_provider.payout(
        PayoutRequest(payout_id="pout_retry", amount=20_000, currency="INR", destination=BANK)
    )
    assert payout.status == "processing"
    assert len(razorpay_fake.requests) == 3
    assert len(razorpay_fake.payouts) == 1


def test_retries_stop_at_attempts_max(razorpay_fake: RazorpayFake) -> None:
    provider = RazorpayProvider(
        **razorpay_fake.provider_options(attempts_max=2, retry_backoff_s=0.0)
    )
    razorpay_fake.fail_next(500, count=5)
    with pytest.raises(ProviderUnavailable):
        provider.payout(
            PayoutRequest(payout_id="pout_down", amount=20_000, currency="INR", destination=BANK)
        )
    assert len(razorpay_fake.requests) == 2


def test_connection_refused_is_unavailable() -> None:
    provider = RazorpayProvider(
        key_id="rzp_test_x", key_secret="secret", api_base=refused_url(), attempts_max=1
    )
    with pytest.raises(ProviderUnavailable, match="could not be reached"):
        open_order(provider)


def test_a_slow_answer_times_out(razorpay_fake: RazorpayFake) -> None:
    provider = RazorpayProvider(**razorpay_fake.provider_options(timeout_s=0.2))
    razorpay_fake.delay_next(1.0)
    with pytest.raises(ProviderUnavailable, match="in time"):
        open_order(provider)
