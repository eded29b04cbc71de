"""The adapters' recurring billing, each against its fake over the official SDK: subscriptions
made and cancelled, and the recurring events read into provider-neutral ones."""

from __future__ import annotations

import pytest

from coffer.errors import ProviderRejected, ProviderUnavailable
from coffer.providers import EventKind, MockProvider, RazorpayProvider, StripeProvider
from coffer.providers.base import SubscriptionRequest
from tests.fakes.razorpay_api import RazorpayFake
from tests.fakes.stripe_api import StripeFake


def request(**overrides: object) -> SubscriptionRequest:
    values: dict[str, object] = {
        "subscription_id": "sub_coffer_1",
        "plan_id": "premium-monthly",
        "plan_name": "Premium",
        "interval": "month",
        "amount": 9_900,
        "currency": "INR",
        "customer_id": "u_1",
    }
    values.update(overrides)
    return SubscriptionRequest(**values)  # type: ignore[arg-type]


def test_razorpay_makes_its_plan_once_and_reads_the_cycle_events(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    first = razorpay_provider.create_subscription(request())
    second = razorpay_provider.create_subscription(request(subscription_id="sub_coffer_2"))
    assert len(razorpay_fake.plans) == 1 and len(razorpay_fake.subscriptions) == 2
    assert first.checkout == {
        "key_id": razorpay_fake.key_id,
        "subscription_id": first.provider_subscription_id,
    }
    assert first.provider_subscription_id != second.provider_subscription_id
    charged = razorpay_fake.charge_subscription(first.provider_subscription_id)
    event = razorpay_provider.parse_webhook(body=charged.body, headers=charged.headers)
    entity = charged.event["payload"]["subscription"]["entity"]
    assert event.kind is EventKind.SUBSCRIPTION_CHARGED
    assert (event.subscription_id, event.amount, event.currency) == (
        first.provider_subscription_id,
        9_900,
        "INR",
    )
    assert (event.period_start_unix, event.period_end_unix) == (
        entity["current_start"],
        entity["current_end"],
    )
    assert event.payment_id and event.payment_id.startswith("pay_")
    pending = razorpay_fake.fail_subscription_charge(first.provider_subscription_id)
    failed = razorpay_provider.parse_webhook(body=pending.body, headers=pending.headers)
    assert failed.kind is EventKind.SUBSCRIPTION_PAYMENT_FAILED and failed.amount is None
    assert failed.period_start_unix == entity["current_end"]
    cancelled = razorpay_provider.cancel_subscription(
        provider_subscription_id=first.provider_subscription_id
    )
    assert cancelled.cancel_at_period_end
    halted = razorpay_fake.halt_subscription(first.provider_subscription_id)
    event = razorpay_provider.parse_webhook(body=halted.body, headers=halted.headers)
    assert event.kind is EventKind.SUBSCRIPTION_HALTED
    other = razorpay_fake.sign({"event": "subscription.authenticated", "payload": {}})
    assert (
        razorpay_provider.parse_webhook(body=other.body, headers=other.headers).kind
        is EventKind.IGNORED
    )


def test_razorpay_errors_are_mapped(
    razorpay_provider: RazorpayProvider, razorpay_fake: RazorpayFake
) -> None:
    with pytest.raises(ProviderRejected):
        razorpay_provider.cancel_subscription(provider_subscription_id="sub_missing")
    razorpay_fake.fail_next(503, count=3)
    with pytest.raises(ProviderUnavailable):
        razorpay_provider.create_subscription(request())
    with pytest.raises(ProviderRejected):
        razorpay_provider.create_subscription(request(amount=0))


def test_stripe_opens_an_incomplete_subscription_and_reads_invoice_events(
    stripe_provider: StripeProvider, stripe_fake: StripeFake
) -> None:
    opened = stripe_provider.create_subscription(request(currency="USD", amount=999))
    stored = stripe_fake.subscriptions[opened.provider_subscription_id]
    invoice = stripe_fake.invoices[stored["latest_invoice"]]
    intent = stripe_fake.payment_intents[invoice["payment_intent"]]
    assert opened.checkout["client_secret"] == intent["client_secret"]
    assert opened.customer_id == stored["customer"] and opened.status == "incomplete"
    again = stripe_provider.create_subscription(request(currency="USD", amount=999))
    assert again.provider_subscription_id == opened.provider_subscription_id  # idempotent
    assert len(stripe_fake.prices) == 1
    paid = stripe_fake.pay_invoice(opened.provider_subscription_id)
    event = stripe_provider.parse_webhook(body=paid.body, headers=paid.headers)
    period = paid.event["data"]["object"]["lines"]["data"][0]["period"]
    assert event.kind is EventKind.SUBSCRIPTION_CHARGED
    assert (event.subscription_id, event.amount, event.currency) == (
        opened.provider_subscription_id,
        999,
        "USD",
    )
    assert (event.period_start_unix, event.period_end_unix) == (period["start"], period["end"])
    # The older API shape names the subscription on the invoice itself.
    old = {**paid.event["data"]["object"], "parent": None, "subscription": "sub_old"}
    legacy = stripe_fake.sign({**paid.event, "id": "evt_1Legacy", "data": {"object": old}})
    assert (
        stripe_provider.parse_webhook(body=legacy.body, headers=legacy.headers).subscription_id
        == "sub_old"
    )
    one_off = {**paid.event["data"]["object"], "parent": None}
    loose = stripe_fake.sign({**paid.event, "id": "evt_1OneOff", "data": {"object": one_off}})
    assert (
        stripe_provider.parse_webhook(body=loose.body, headers=loose.headers).kind
        is EventKind.IGNORED
    )
    failed = stripe_fake.fail_invoice(opened.provider_subscription_id)
    event = stripe_provider.parse_webhook(body=failed.body, headers=failed.headers)
    assert event.kind is EventKind.SUBSCRIPTION_PAYMENT_FAILED and event.amount is None
    assert event.period_start_unix == period["end"]
    cancelled = stripe_provider.cancel_subscription(
        provider_subscription_id=opened.provider_subscription_id
    )
    assert cancelled.cancel_at_period_end
    ended = stripe_fake.end_subscription(opened.provider_subscription_id)
    event = stripe_provider.parse_webhook(body=ended.body, headers=ended.headers)
    assert event.kind is EventKind.SUBSCRIPTION_CANCELLED
    assert event.subscription_id == opened.provider_subscription_id
    with pytest.raises(ProviderRejected):
        stripe_provider.cancel_subscription(provider_subscription_id="sub_missing")


def test_the_mock_subscription_is_named_from_coffers_id() -> None:
    mock = MockProvider(webhook_secret="s" * 32)
    opened = mock.create_subscription(request())
    assert (
        opened.provider_subscription_id
        == mock.create_subscription(request()).provider_subscription_id
    )
    assert opened.checkout == {"subscription_id": opened.provider_subscription_id}
    assert mock.cancel_subscription(
        provider_subscription_id=opened.provider_subscription_id
    ).cancel_at_period_end
    with pytest.raises(ProviderRejected):
        mock.cancel_subscription(provider_subscription_id="sub_other")
    body, headers = mock.build_webhook(
        "subscription.charged",
        amount=9_900,
        extra={"subscription_id": "mock_sub_x", "period_start_unix": 10, "period_end_unix": 20},
    )
    event = mock.parse_webhook(body=body, headers=headers)
    assert (event.kind, event.subscription_id, event.period_start_unix, event.period_end_unix) == (
        EventKind.SUBSCRIPTION_CHARGED,
        "mock_sub_x",
        10,
        20,
    )


def test_an_invoices_payment_intent_event_is_left_to_the_invoice_events(
    stripe_provider: StripeProvider, stripe_fake: StripeFake
) -> None:
    intent = {"id": "pi_3Invoice", "object": "payment_intent", "invoice": "in_1X", "amount": 999}
    event = {"id": "evt_1Pi", "type": "payment_intent.succeeded", "data": {"object": intent}}
    signed = stripe_fake.sign(event)
    parsed = stripe_provider.parse_webhook(body=signed.body, headers=signed.headers)
    assert parsed.kind is EventKind.IGNORED
