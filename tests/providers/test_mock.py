"""The sandbox provider's full cycle: order, checkout proof, signed webhooks, refunds, payouts."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from coffer.errors import InvalidSignature, ProviderRejected, ProviderUnavailable
from coffer.providers import EventKind, MockProvider, OrderRequest, PayoutRequest, Provider
from coffer.providers.mock import SIGNATURE_HEADER

NOW_S = 1_800_000_000


def make_mock(secret: str | None = "mock-secret-for-tests", now_s: int = NOW_S) -> MockProvider:
    return MockProvider(webhook_secret=secret, clock_s=lambda: now_s)


def order_request(**overrides: object) -> OrderRequest:
    values: dict[str, object] = {"order_id": "po_test_1", "amount": 49_900, "currency": "INR"}
    values.update(overrides)
    return OrderRequest(**values)  # type: ignore[arg-type]


def test_the_mock_is_a_provider() -> None:
    assert isinstance(make_mock(), Provider)
    assert make_mock().public_config() == {"sandbox": True}


def test_order_then_checkout_proof_verifies() -> None:
    mock = make_mock()
    order = mock.create_order(order_request())
    assert order.provider == "mock"
    assert order.provider_order_id.startswith("mock_order_")
    assert (order.amount, order.currency, order.status) == (49_900, "INR", "created")
    payment_id, signature = order.checkout["payment_id"], order.checkout["signature"]
    assert payment_id.startswith("mock_pay_")
    confirmation = mock.verify_payment(
        provider_order_id=order.provider_order_id,
        payment_id=payment_id,
        signature=signature,
        amount=49_900,
        currency="INR",
    )
    assert confirmation.payment_id == payment_id
    assert (confirmation.amount, confirmation.currency) == (49_900, "INR")


@pytest.mark.parametrize(
    "change",
    [
        {"signature": "0" * 64},
        {"amount": 49_901},
        {"currency": "USD"},
        {"payment_id": "mock_pay_someone_else"},
        {"provider_order_id": "mock_order_other"},
    ],
)
def test_a_tampered_checkout_proof_is_refused(change: dict[str, object]) -> None:
    mock = make_mock()
    order = mock.create_order(order_request())
    proof: dict[str, object] = {
        "provider_order_id": order.provider_order_id,
        "payment_id": order.checkout["payment_id"],
        "signature": order.checkout["signature"],
        "amount": 49_900,
        "currency": "INR",
        **change,
    }
    with pytest.raises(InvalidSignature):
        mock.verify_payment(**proof)  # type: ignore[arg-type]


def test_orders_are_idempotent_by_coffer_order_id() -> None:
    mock = make_mock()
    first, again = mock.create_order(order_request()), mock.create_order(order_request())
    other = mock.create_order(order_request(order_id="po_test_2"))
    assert first == again
    assert other.provider_order_id != first.provider_order_id


@pytest.mark.parametrize(
    "change",
    [{"amount": 0}, {"amount": -5}, {"amount": 10.0}, {"amount": True}, {"currency": "inr"}],
)
def test_bad_orders_are_rejected(change: dict[str, object]) -> None:
    with pytest.raises(ProviderRejected):
        make_mock().create_order(order_request(**change))


def test_without_a_configured_secret_the_process_secret_is_shared_in_process() -> None:
    # Two registries built in one process (a test app, a CLI command) agree with each other,
    # but not with a deployment that configured its own secret.
    one, two = MockProvider(), MockProvider()
    assert one.secret_is_ephemeral and two.secret_is_ephemeral
    order = one.create_order(order_request())
    two.verify_payment(
        provider_order_id=order.provider_order_id,
        payment_id=order.checkout["payment_id"],
        signature=order.checkout["signature"],
        amount=49_900,
        currency="INR",
    )
    body, headers = one.build_webhook(EventKind.PAYMENT_SUCCEEDED, provider_order_id="x")
    assert two.parse_webhook(body=body, headers=headers).kind is EventKind.PAYMENT_SUCCEEDED
    configured = make_mock("configured-secret")
    assert not configured.secret_is_ephemeral
    with pytest.raises(InvalidSignature):
        configured.parse_webhook(body=body, headers=headers)
    with pytest.raises(InvalidSignature):
        configured.verify_payment(
            provider_order_id=order.provider_order_id,
            payment_id=order.checkout["payment_id"],
            signature=order.checkout["signature"],
            amount=49_900,
            currency="INR",
        )


@pytest.mark.parametrize("kind", list(EventKind))
def test_every_event_kind_round_trips_through_a_signed_webhook(kind: EventKind) -> None:
    mock = make_mock()
    body, headers = mock.build_webhook(
        kind,
        provider_order_id="mock_order_1",
        payment_id="mock_pay_1",
        refund_id="mock_rfnd_1",
        payout_id="mock_pout_1",
        amount=1_000,
        currency="INR",
        failure_reason="declined" if kind.endswith("failed") else None,
        event_id="mock_evt_fixed",
    )
    assert headers[SIGNATURE_HEADER].startswith(f"t={NOW_S},v1=")
    event = mock.parse_webhook(body=body, headers=headers)
    assert (event.provider, event.event_id, event.kind, event.provider_type) == (
        "mock",
        "mock_evt_fixed",
        kind,
        kind.value,
    )
    assert (event.provider_order_id, event.payment_id, event.refund_id, event.payout_id) == (
        "mock_order_1",
        "mock_pay_1",
        "mock_rfnd_1",
        "mock_pout_1",
    )
    assert (event.amount, event.currency) == (1_000, "INR")
    assert event.occurred_at is not None and int(event.occurred_at.timestamp()) == NOW_S
    assert event.failure_reason == ("declined" if kind.endswith("failed") else None)


def test_an_unknown_event_type_is_ignored_not_refused() -> None:
    mock = make_mock()
    body, headers = mock.build_webhook("customer.created")
    event = mock.parse_webhook(body=body, headers=headers)
    assert (event.kind, event.provider_type) == (EventKind.IGNORED, "customer.created")


def test_webhook_headers_are_found_whatever_their_case() -> None:
    mock = make_mock()
    body, headers = mock.build_webhook(EventKind.PAYMENT_SUCCEEDED)
    lowered = {key.lower(): value for key, value in headers.items()}
    assert mock.parse_webhook(body=body, headers=lowered).kind is EventKind.PAYMENT_SUCCEEDED


@pytest.mark.parametrize(("age_s", "accepted"), [(300, True), (301, False), (-301, False)])
def test_mock_webhooks_are_bounded_in_time(age_s: int, accepted: bool) -> None:
    mock = make_mock()
    body, headers = mock.build_webhook(EventKind.PAYMENT_SUCCEEDED, timestamp_s=NOW_S - age_s)
    if accepted:
        mock.parse_webhook(body=body, headers=headers)
    else:
        with pytest.raises(InvalidSignature):
            mock.parse_webhook(body=body, headers=headers)


def test_forged_tampered_or_reserialised_mock_webhooks_are_refused() -> None:
    mock = make_mock()
    body, headers = mock.build_webhook(EventKind.PAYMENT_SUCCEEDED, amount=100, currency="INR")
    forged_body, forged_headers = make_mock("attacker-guess").build_webhook(
        EventKind.PAYMENT_SUCCEEDED, amount=100, currency="INR"
    )
    for bad_body, bad_headers in [
        (forged_body, forged_headers),
        (body.replace(b'"amount":100', b'"amount":900'), headers),
        (json.dumps(json.loads(body), indent=1).encode(), headers),
        (body, {}),
    ]:
        with pytest.raises(InvalidSignature):
            mock.parse_webhook(body=bad_body, headers=bad_headers)


def test_refunds_succeed_at_once_and_are_idempotent_by_key() -> None:
    mock = make_mock()
    order = mock.create_order(order_request())
    payment_id = order.checkout["payment_id"]
    partial = mock.refund(
        payment_id=payment_id, amount=10_000, currency="INR", idempotency_key="rf_1", reason="asked"
    )
    again = mock.refund(
        payment_id=payment_id, amount=10_000, currency="INR", idempotency_key="rf_1", reason="asked"
    )
    rest = mock.refund(
        payment_id=payment_id, amount=39_900, currency="INR", idempotency_key="rf_2", reason="asked"
    )
    assert partial == again
    assert partial.status == rest.status == "succeeded"
    assert partial.refund_id.startswith("mock_rfnd_") and partial.refund_id != rest.refund_id
    assert (rest.amount, rest.payment_id) == (39_900, payment_id)
    with pytest.raises(ProviderRejected):
        mock.refund(
            payment_id="pay_razorpay", amount=1, currency="INR", idempotency_key="k", reason=""
        )
    with pytest.raises(ProviderRejected):
        mock.refund(payment_id=payment_id, amount=0, currency="INR", idempotency_key="k", reason="")


def payout_request(destination: Mapping[str, object], payout_id: str = "po_out_1") -> PayoutRequest:
    return PayoutRequest(
        payout_id=payout_id, amount=25_000, currency="INR", destination=destination
    )


def test_payouts_are_paid_at_once_and_idempotent() -> None:
    mock = make_mock()
    bank = {"type": "bank_account", "account_number": "123456789012", "ifsc": "HDFC0000001"}
    paid = mock.payout(payout_request(bank))
    assert (paid.status, paid.amount, paid.currency, paid.failure_reason) == (
        "paid",
        25_000,
        "INR",
        None,
    )
    assert paid.payout_id.startswith("mock_pout_")
    assert mock.payout(payout_request(bank)) == paid
    assert mock.payout(payout_request({"type": "vpa", "address": "host@upi"})).status == "paid"


@pytest.mark.parametrize(
    "destination",
    [
        {"type": "bank_account", "account_number": "123456780000"},
        {"type": "vpa", "address": "fail@upi"},
    ],
)
def test_payouts_can_be_told_to_fail(destination: dict[str, object]) -> None:
    failed = make_mock().payout(payout_request(destination))
    assert failed.status == "failed"
    assert failed.failure_reason


@pytest.mark.parametrize(
    "destination",
    [
        {"type": "bank_account", "account_number": "123456789999"},
        {"type": "vpa", "address": "down@upi"},
    ],
)
def test_payouts_can_be_told_the_bank_is_down(destination: dict[str, object]) -> None:
    with pytest.raises(ProviderUnavailable):
        make_mock().payout(payout_request(destination))


@pytest.mark.parametrize(
    "destination",
    [
        {},
        {"type": "card"},
        {"type": "bank_account"},
        {"type": "bank_account", "account_number": "12ab"},
        {"type": "vpa", "address": "no-at-sign"},
    ],
)
def test_malformed_payout_destinations_are_rejected(destination: dict[str, object]) -> None:
    with pytest.raises(ProviderRejected):
        make_mock().payout(payout_request(destination))
