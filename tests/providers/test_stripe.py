"""The Stripe adapter end to end: the official SDK over HTTP against the local fake."""

from __future__ import annotations

import json
import time

import pytest
import stripe

from coffer.errors import InvalidSignature, ProviderDisabled, ProviderRejected, ProviderUnavailable
from coffer.providers import EventKind, OrderRequest, PayoutRequest, Provider, StripeProvider
from tests.fakes._http import refused_url
from tests.fakes.stripe_api import StripeFake

AMOUNT = 2_000  # $20.00 in cents


def open_intent(
    provider: StripeProvider, *, order_id: str = "po_str_1", amount: int = AMOUNT
) -> tuple[str, str]:
    """A PaymentIntent for an order: (its id, its client secret)."""
    order = provider.create_order(
        OrderRequest(order_id=order_id, amount=amount, currency="USD", customer_id="u_1")
    )
    return order.provider_order_id, order.checkout["client_secret"]


def paid_intent(provider: StripeProvider, fake: StripeFake) -> str:
    intent_id, _ = open_intent(provider)
    fake.succeed_payment(intent_id)
    return intent_id


def test_the_adapter_is_a_provider(stripe_provider: StripeProvider) -> None:
    assert isinstance(stripe_provider, Provider)
    assert stripe_provider.public_config() == {"publishable_key": StripeFake.publishable_key}


def test_telemetry_is_off() -> None:
    assert stripe.enable_telemetry is False


# -- orders and checkout --------------------------------------------------------------------------


def test_create_order(stripe_provider: StripeProvider, stripe_fake: StripeFake) -> None:
    order = stripe_provider.create_order(
        OrderRequest(
            order_id="po_str_1",
            amount=AMOUNT,
            currency="USD",
            description="250 diamonds",
            customer_id="u_1",
        )
    )
    assert order.provider == "stripe" and order.provider_order_id.startswith("pi_")
    intent = stripe_fake.payment_intents[order.provider_order_id]
    assert (intent["amount"], intent["currency"], intent["description"]) == (
        AMOUNT,
        "usd",
        "250 diamonds",
    )
    assert intent["metadata"] == {"order_id": "po_str_1", "customer_id": "u_1"}
    assert order.checkout == {
        "client_secret": intent["client_secret"],
        "publishable_key": StripeFake.publishable_key,
    }
    (sent,) = stripe_fake.requests
    assert sent.headers["idempotency-key"] == "coffer-order-po_str_1"
    assert sent.headers["authorization"] == f"Bearer {StripeFake.api_key}"


def test_create_order_is_idempotent(
    stripe_provider: StripeProvider, stripe_fake: StripeFake
) -> None:
    first, again = open_intent(stripe_provider), open_intent(stripe_provider)
    assert first == again
    assert len(stripe_fake.payment_intents) == 1
    with pytest.raises(ProviderRejected, match="same parameters"):
        open_intent(stripe_provider, amount=AMOUNT + 1)  # same order id, other amount


def test_verify_a_succeeded_payment(
    stripe_provider: StripeProvider, stripe_fake: StripeFake
) -> None:
    intent_id, client_secret = open_intent(stripe_provider)
    stripe_fake.succeed_payment(intent_id)
    for payment_id in (intent_id, stripe_fake.payment_intents[intent_id]["latest_charge"]):
        confirmation = stripe_provider.verify_payment(
            provider_order_id=intent_id,
            payment_id=payment_id,
            signature=client_secret,
            amount=AMOUNT,
            currency="USD",
        )
        assert (confirmation.payment_id, confirmation.amount, confirmation.currency) == (
            intent_id,
            AMOUNT,
            "USD",
        )


def test_verify_refuses_the_wrong_secret_or_payment(
    stripe_provider: StripeProvider, stripe_fake: StripeFake
) -> None:
    intent_id, client_secret = open_intent(stripe_provider)
    other_id, other_secret = open_intent(stripe_provider, order_id="po_str_2")
    stripe_fake.succeed_payment(intent_id)
    for payment_id, signature in [
        (intent_id, other_secret),
        (intent_id, client_secret + "x"),
        (other_id, client_secret),
    ]:
        with pytest.raises(InvalidSignature):
            stripe_provider.verify_payment(
                provider_order_id=intent_id,
                payment_id=payment_id,
                signature=signature,
                amount=AMOUNT,
                currency="USD",
            )


def test_verify_refuses_an_unpaid_or_different_payment(
    stripe_provider: StripeProvider, stripe_fake: StripeFake
) -> None:
    intent_id, client_secret = open_intent(stripe_provider)
    with pytest.raises(ProviderRejected, match="requires_payment_method"):
        stripe_provider.verify_payment(
            provider_order_id=intent_id,
            payment_id=intent_id,
            signature=client_secret,
            amount=AMOUNT,
            currency="USD",
        )
    stripe_fake.succeed_payment(intent_id)
    with pytest.raises(ProviderRejected, match="amount"):
        stripe_provider.verify_payment(
            provider_order_id=intent_id,
            payment_id=intent_id,
            signature=client_secret,
            amount=AMOUNT * 2,
            currency="USD",
        )
    with pytest.raises(ProviderRejected, match="currency"):
        stripe_provider.verify_payment(
            provider_order_id=intent_id,
            payment_id=intent_id,
            signature=client_secret,
            amount=AMOUNT,
            currency="EUR",
        )


def test_verify_an_unknown_intent(stripe_provider: StripeProvider) -> None:
    with pytest.raises(ProviderRejected, match="No such payment_intent"):
        stripe_provider.verify_payment(
            provider_order_id="pi_unknown",
            payment_id="pi_unknown",
            signature="x",
            amount=AMOUNT,
            currency="USD",
        )
    with pytest.raises(InvalidSignature):
        stripe_provider.verify_payment(
            provider_order_id="order_razorpay",
            payment_id="x",
            signature="x",
            amount=AMOUNT,
            currency="USD",
        )


# -- webhooks -------------------------------------------------------------------------------------


def test_payment_intent_webhooks(stripe_provider: StripeProvider, stripe_fake: StripeFake) -> None:
    intent_id, _ = open_intent(stripe_provider)
    cases = [
        (stripe_fake.process_payment, EventKind.PAYMENT_PROCESSING, None),
        (stripe_fake.fail_payment, EventKind.PAYMENT_FAILED, "Your card was declined."),
        (stripe_fake.succeed_payment, EventKind.PAYMENT_SUCCEEDED, None),
    ]
    for act, kind, failure in cases:
        delivery = act(intent_id)
        event = stripe_provider.parse_webhook(body=delivery.body, headers=delivery.headers)
        assert (event.kind, event.provider_order_id, event.payment_id) == (
            kind,
            intent_id,
            intent_id,
        )
        assert (event.amount, event.currency, event.failure_reason) == (AMOUNT, "USD", failure)
        assert (
            event.event_id == delivery.event["id"] and event.provider_type == delivery.event["type"]
        )
        assert event.data["data"]["object"]["metadata"]["order_id"] == "po_str_1"


def test_a_cancelled_intent(stripe_provider: StripeProvider, stripe_fake: StripeFake) -> None:
    intent_id, _ = open_intent(stripe_provider)
    delivery = stripe_fake.cancel_payment(intent_id, reason="abandoned")
    event = stripe_provider.parse_webhook(body=delivery.body, headers=delivery.headers)
    assert (event.kind, event.failure_reason) == (EventKind.PAYMENT_CANCELLED, "abandoned")


def test_the_sdk_accepts_the_fakes_webhooks(
    stripe_provider: StripeProvider, stripe_fake: StripeFake
) -> None:
    intent_id, _ = open_intent(stripe_provider)
    delivery = stripe_fake.succeed_payment(intent_id)
    event = stripe.Webhook.construct_event(
        delivery.body, delivery.headers["Stripe-Signature"], StripeFake.webhook_secret
    )
    assert (event.id, event.type) == (delivery.event["id"], "payment_intent.succeeded")


def test_webhooks_are_bounded_in_time(stripe_fake: StripeFake) -> None:
    now_s = 1_800_000_000
    provider = StripeProvider(**stripe_fake.provider_options(clock_s=lambda: now_s))
    event = {
        "id": "evt_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": now_s,
        "data": {"object": {}},
    }
    for offset_s, accepted in [(-300, True), (-301, False), (300, True), (301, False)]:
        delivery = stripe_fake.sign(event, timestamp=now_s + offset_s)
        if accepted:
            provider.parse_webhook(body=delivery.body, headers=delivery.headers)
        else:
            with pytest.raises(InvalidSignature):
                provider.parse_webhook(body=delivery.body, headers=delivery.headers)


def test_webhooks_signed_during_a_secret_rotation(stripe_fake: StripeFake) -> None:
    event = {
        "id": "evt_rot",
        "object": "event",
        "type": "payout.paid",
        "created": 1,
        "data": {"object": {"id": "po_1"}},
    }
    delivery = stripe_fake.sign(event, secrets=["whsec_old_secret", StripeFake.webhook_secret])
    for secret in ("whsec_old_secret", StripeFake.webhook_secret):
        provider = StripeProvider(**stripe_fake.provider_options(webhook_secret=secret))
        assert (
            provider.parse_webhook(body=delivery.body, headers=delivery.headers).kind
            is EventKind.PAYOUT_PAID
        )


def test_forged_tampered_or_reserialised_webhooks_are_refused(
    stripe_provider: StripeProvider, stripe_fake: StripeFake
) -> None:
    intent_id, _ = open_intent(stripe_provider)
    good = stripe_fake.succeed_payment(intent_id)
    forged = stripe_fake.sign(good.event, secrets=["whsec_guess"])
    reserialised = json.dumps(json.loads(good.body), separators=(",", ":")).encode()
    for body, headers in [
        (forged.body, forged.headers),
        (good.body.replace(b'"succeeded"', b'"canceled"', 1), good.headers),
        (reserialised, good.headers),
        (good.body, {}),
    ]:
        with pytest.raises(InvalidSignature):
            stripe_provider.parse_webhook(body=body, headers=headers)


def test_webhooks_are_off_without_their_secret(stripe_fake: StripeFake) -> None:
    provider = StripeProvider(**stripe_fake.provider_options(webhook_secret=None))
    delivery = stripe_fake.sign({"id": "evt_1", "type": "payout.paid", "data": {"object": {}}})
    with pytest.raises(ProviderDisabled, match="COFFER_STRIPE_WEBHOOK_SECRET"):
        provider.parse_webhook(body=delivery.body, headers=delivery.headers)


def test_events_coffer_does_not_act_on_are_ignored(
    stripe_provider: StripeProvider, stripe_fake: StripeFake
) -> None:
    delivery = stripe_fake.sign(
        {"id": "evt_c", "object": "event", "type": "customer.created", "data": {"object": {}}}
    )
    event = stripe_provider.parse_webhook(body=delivery.body, headers=delivery.headers)
    assert (event.kind, event.provider_type) == (EventKind.IGNORED, "customer.created")


# -- refunds --------------------------------------------------------------------------------------


def test_partial_then_full_refund(stripe_provider: StripeProvider, stripe_fake: StripeFake) -> None:
    intent_id = paid_intent(stripe_provider, stripe_fake)
    partial = stripe_provider.refund(
        payment_id=intent_id, amount=500, currency="USD", idempotency_key="rf_1", reason="late"
    )
    assert (partial.status, partial.amount, partial.currency, partial.payment_id) == (
        "succeeded",
        500,
        "USD",
        intent_id,
    )
    assert stripe_fake.refunds[partial.refund_id]["metadata"] == {
        "reason": "late",
        "coffer_refund_id": "rf_1",
    }
    assert partial.reference == "rf_1"
    rest = stripe_provider.refund(
        payment_id=intent_id, amount=AMOUNT - 500, currency="USD", idempotency_key="rf_2", reason=""
    )
    charge = stripe_fake.charges[stripe_fake.payment_intents[intent_id]["latest_charge"]]
    assert charge["refunded"] is True and charge["amount_refunded"] == AMOUNT
    refunded = stripe_fake.webhook("charge.refunded")
    event = stripe_provider.parse_webhook(body=refunded.body, headers=refunded.headers)
    assert (event.kind, event.payment_id, event.refund_id, event.amount) == (
        EventKind.REFUND_SUCCEEDED,
        intent_id,
        rest.refund_id,
        AMOUNT - 500,
    )
    created = stripe_fake.webhook("refund.created")
    event = stripe_provider.parse_webhook(body=created.body, headers=created.headers)
    assert (event.kind, event.refund_id) == (EventKind.REFUND_SUCCEEDED, rest.refund_id)
    with pytest.raises(ProviderRejected, match="already been refunded"):
        stripe_provider.refund(
            payment_id=intent_id, amount=1, currency="USD", idempotency_key="rf_3", reason=""
        )


def test_a_refund_is_idempotent_by_key(
    stripe_provider: StripeProvider, stripe_fake: StripeFake
) -> None:
    intent_id = paid_intent(stripe_provider, stripe_fake)
    first = stripe_provider.refund(
        payment_id=intent_id, amount=700, currency="USD", idempotency_key="rf_same", reason=""
    )
    again = stripe_provider.refund(
        payment_id=intent_id, amount=700, currency="USD", idempotency_key="rf_same", reason=""
    )
    assert first == again and len(stripe_fake.refunds) == 1


def test_refunding_more_than_was_paid_is_refused(
    stripe_provider: StripeProvider, stripe_fake: StripeFake
) -> None:
    intent_id = paid_intent(stripe_provider, stripe_fake)
    with pytest.raises(ProviderRejected, match="greater than unrefunded"):
        stripe_provider.refund(
            payment_id=intent_id,
            amount=AMOUNT + 1,
            currency="USD",
            idempotency_key="rf_big",
            reason="",
        )


def test_refunding_an_unpaid_intent_is_refused(stripe_provider: StripeProvider) -> None:
    intent_id, _ = open_intent(stripe_provider)
    with pytest.raises(ProviderRejected, match="successful charge"):
        stripe_provider.refund(
            payment_id=intent_id, amount=100, currency="USD", idempotency_key="rf_x", reason=""
        )


# -- payouts --------------------------------------------------------------------------------------


def test_payout_then_paid_or_failed(
    stripe_provider: StripeProvider, stripe_fake: StripeFake
) -> None:
    paid_intent(stripe_provider, stripe_fake)  # puts $20 in the balance
    request = PayoutRequest(
        payout_id="pout_s1", amount=1_500, currency="USD", destination={"type": "bank_account"}
    )
    payout = stripe_provider.payout(request)
    assert (payout.status, payout.amount, payout.currency) == ("pending", 1_500, "USD")
    assert stripe_provider.payout(request) == payout and len(stripe_fake.payouts) == 1
    created = stripe_fake.webhook("payout.created")
    assert (
        stripe_provider.parse_webhook(body=created.body, headers=created.headers).kind
        is EventKind.IGNORED
    )
    delivery = stripe_fake.pay_out(payout.payout_id)
    event = stripe_provider.parse_webhook(body=delivery.body, headers=delivery.headers)
    assert (event.kind, event.payout_id, event.amount, event.currency) == (
        EventKind.PAYOUT_PAID,
        payout.payout_id,
        1_500,
        "USD",
    )
    delivery = stripe_fake.fail_payout(payout.payout_id)
    event = stripe_provider.parse_webhook(body=delivery.body, headers=delivery.headers)
    assert (event.kind, event.failure_reason) == (
        EventKind.PAYOUT_FAILED,
        "The bank account has been closed.",
    )


def test_a_payout_from_a_connected_account(
    stripe_provider: StripeProvider, stripe_fake: StripeFake
) -> None:
    paid_intent(stripe_provider, stripe_fake)
    destination = {
        "type": "bank_account",
        "stripe_account": "acct_1Host",
        "external_account": "ba_1Host",
    }
    payout = stripe_provider.payout(
        PayoutRequest(payout_id="pout_s2", amount=100, currency="USD", destination=destination)
    )
    stored = stripe_fake.payouts[payout.payout_id]
    assert (stored["stripe_account"], stored["destination"]) == ("acct_1Host", "ba_1Host")


def test_payout_refusals(stripe_provider: StripeProvider) -> None:
    with pytest.raises(ProviderRejected, match="insufficient funds"):
        stripe_provider.payout(
            PayoutRequest(
                payout_id="pout_s3",
                amount=1_000,
                currency="USD",
                destination={"type": "bank_account"},
            )
        )
    with pytest.raises(ProviderRejected, match="bank accounts only"):
        stripe_provider.payout(
            PayoutRequest(
                payout_id="pout_s4",
                amount=1_000,
                currency="USD",
                destination={"type": "vpa", "address": "a@b"},
            )
        )


# -- errors at the boundary -----------------------------------------------------------------------


def test_a_4xx_is_a_rejection(stripe_provider: StripeProvider) -> None:
    with pytest.raises(ProviderRejected, match="at least") as raised:
        open_intent(stripe_provider, amount=10)
    assert raised.value.details["provider_code"] == "amount_too_small"


def test_wrong_key_is_a_rejection(stripe_fake: StripeFake) -> None:
    provider = StripeProvider(
        **stripe_fake.provider_options(api_key="sk_test_wrong", attempts_max=1)
    )
    with pytest.raises(ProviderRejected, match="Invalid API Key"):
        open_intent(provider)


def test_a_card_error_is_a_rejection(
    stripe_provider: StripeProvider, stripe_fake: StripeFake
) -> None:
    stripe_fake.fail_next(
        402,
        body={
            "error": {
                "type": "card_error",
                "code": "card_declined",
                "message": "Your card was declined.",
            }
        },
    )
    with pytest.raises(ProviderRejected, match="declined"):
        open_intent(stripe_provider)


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_5xx_and_rate_limits_are_unavailable(
    stripe_provider: StripeProvider, stripe_fake: StripeFake, status: int
) -> None:
    stripe_fake.fail_next(status)
    with pytest.raises(ProviderUnavailable):
        open_intent(stripe_provider)


def test_a_transient_5xx_is_retried_with_the_same_idempotency_key(stripe_fake: StripeFake) -> None:
    provider = StripeProvider(**stripe_fake.provider_options(attempts_max=2))
    stripe_fake.fail_next(500)
    intent_id, _ = open_intent(provider)
    assert len(stripe_fake.requests) == 2
    assert {r.headers["idempotency-key"] for r in stripe_fake.requests} == {"coffer-order-po_str_1"}
    assert list(stripe_fake.payment_intents) == [intent_id]


def test_connection_refused_is_unavailable() -> None:
    provider = StripeProvider(api_key="sk_test_x", api_base=refused_url(), attempts_max=1)
    with pytest.raises(ProviderUnavailable, match="could not be reached"):
        open_intent(provider)


def test_a_slow_answer_times_out(stripe_fake: StripeFake) -> None:
    provider = StripeProvider(**stripe_fake.provider_options(timeout_s=0.2, attempts_max=1))
    stripe_fake.delay_next(1.0)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable):
        open_intent(provider)
    assert time.monotonic() - started < 1.0
