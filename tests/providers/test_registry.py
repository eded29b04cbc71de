"""The registry: providers built from settings, off without their keys, and saying so."""

from __future__ import annotations

import json
import os

import pytest

from coffer.config import Settings
from coffer.errors import ProviderOff
from coffer.providers import (
    PROVIDER_NAMES,
    MockProvider,
    OrderRequest,
    Provider,
    Providers,
    RazorpayProvider,
    StripeProvider,
)
from tests.fakes.razorpay_api import RazorpayFake
from tests.fakes.stripe_api import StripeFake


def settings(**values: object) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_coffer_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's COFFER_* variables must not leak into these settings."""
    for name in list(os.environ):
        if name.startswith("COFFER_"):
            monkeypatch.delenv(name)


def test_by_default_only_the_mock_is_on() -> None:
    providers = Providers.from_settings(settings())
    assert providers.enabled() == ["mock"]
    assert isinstance(providers.get("mock"), MockProvider)
    assert "mock" in providers and "stripe" not in providers
    assert providers.public_config() == {"mock": {"sandbox": True}}


@pytest.mark.parametrize(
    ("values", "name", "missing", "present"),
    [
        ({}, "razorpay", ["COFFER_RAZORPAY_KEY_ID", "COFFER_RAZORPAY_KEY_SECRET"], []),
        (
            {"razorpay_key_id": "rzp_test_1"},
            "razorpay",
            ["COFFER_RAZORPAY_KEY_SECRET"],
            ["COFFER_RAZORPAY_KEY_ID"],
        ),
        (
            {"razorpay_key_secret": "s"},
            "razorpay",
            ["COFFER_RAZORPAY_KEY_ID"],
            ["COFFER_RAZORPAY_KEY_SECRET"],
        ),
        (
            {"razorpay_key_id": "", "razorpay_key_secret": ""},
            "razorpay",
            ["COFFER_RAZORPAY_KEY_ID", "COFFER_RAZORPAY_KEY_SECRET"],
            [],
        ),
        ({}, "stripe", ["COFFER_STRIPE_API_KEY"], []),
        (
            {"stripe_api_key": "", "stripe_publishable_key": "pk_test_1"},
            "stripe",
            ["COFFER_STRIPE_API_KEY"],
            [],
        ),
        ({"mock_enabled": False}, "mock", ["COFFER_MOCK_ENABLED"], []),
    ],
)
def test_a_provider_without_its_keys_is_off_and_says_so(
    values: dict[str, object], name: str, missing: list[str], present: list[str]
) -> None:
    providers = Providers.from_settings(settings(**values))
    assert name not in providers.enabled()
    with pytest.raises(ProviderOff) as raised:
        providers.get(name)
    assert raised.value.code == "validation_error"
    assert raised.value.details["provider"] == name
    for variable in missing:
        assert variable in raised.value.message
    for variable in present:
        assert variable not in raised.value.message
    assert name in providers.disabled()


def test_an_unknown_provider() -> None:
    with pytest.raises(ProviderOff, match="no payment provider 'paypal'"):
        Providers.from_settings(settings()).get("paypal")


def test_the_environment_configures_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COFFER_MOCK_ENABLED", "false")
    monkeypatch.setenv("COFFER_STRIPE_API_KEY", "sk_test_env")
    monkeypatch.setenv("COFFER_MOCK_WEBHOOK_SECRET", "")
    providers = Providers.from_settings(Settings())
    assert providers.enabled() == ["stripe"]


def test_every_provider_from_the_fakes_settings(
    razorpay_fake: RazorpayFake, stripe_fake: StripeFake
) -> None:
    values = {
        **razorpay_fake.settings_values(),
        **stripe_fake.settings_values(),
        "mock_webhook_secret": "m",
        "mock_enabled": True,  # beside real keys the mock is on only when asked for
    }
    providers = Providers.from_settings(settings(**values), attempts_max=1)
    assert providers.enabled() == sorted(PROVIDER_NAMES)
    assert isinstance(providers.get("razorpay"), RazorpayProvider)
    assert isinstance(providers.get("stripe"), StripeProvider)
    for name in PROVIDER_NAMES:
        assert isinstance(providers.get(name), Provider)
    public = providers.public_config()
    assert public == {
        "mock": {"sandbox": True},
        "razorpay": {"key_id": RazorpayFake.key_id},
        "stripe": {"publishable_key": StripeFake.publishable_key},
    }
    text = json.dumps(public)
    for secret in (
        RazorpayFake.key_secret,
        RazorpayFake.webhook_secret,
        StripeFake.api_key,
        StripeFake.webhook_secret,
        "m",
    ):
        assert f'"{secret}"' not in text
    # The registry's adapters really reach the fakes.
    order = providers.get("razorpay").create_order(
        OrderRequest(order_id="po_r", amount=10_000, currency="INR")
    )
    assert order.provider_order_id in razorpay_fake.orders
    order = providers.get("stripe").create_order(
        OrderRequest(order_id="po_s", amount=1_000, currency="USD")
    )
    assert order.provider_order_id in stripe_fake.payment_intents


def test_the_configured_mock_secret_is_used() -> None:
    configured = Providers.from_settings(settings(mock_webhook_secret="shared-across-processes"))
    mock = configured.get("mock")
    assert isinstance(mock, MockProvider) and not mock.secret_is_ephemeral
    body, headers = MockProvider(webhook_secret="shared-across-processes").build_webhook(
        "payment.succeeded"
    )
    assert mock.parse_webhook(body=body, headers=headers).provider_type == "payment.succeeded"
    ephemeral = Providers.from_settings(settings()).get("mock")
    assert isinstance(ephemeral, MockProvider) and ephemeral.secret_is_ephemeral
