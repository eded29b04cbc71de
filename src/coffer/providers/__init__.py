"""Payment providers behind one Protocol, and the registry a process builds from its settings.

    from coffer.providers import Providers
    providers = Providers.from_settings(settings)
    order = providers.get("razorpay").create_order(OrderRequest(...))

`mock` is the sandbox, on as `Settings.mock_off_reason` decides (in development while no real
provider is configured, or with `COFFER_MOCK_ENABLED=true`; never in production); `razorpay`
needs `COFFER_RAZORPAY_KEY_ID` and `COFFER_RAZORPAY_KEY_SECRET`; `stripe` needs
`COFFER_STRIPE_API_KEY`. A provider that is off is a `ProviderOff` (422) from `get`, saying why
and which variables would turn it on; no other provider ever stands in for it. Webhook secrets
and the RazorpayX account are checked when they are needed: without them the provider still
takes orders but refuses webhooks (or payouts), saying why (`ProviderDisabled`, 503).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coffer.config import Settings
from coffer.errors import ProviderOff
from coffer.providers.base import (
    OUTBOUND_ATTEMPTS_MAX,
    OUTBOUND_TIMEOUT_S,
    EventKind,
    OrderRequest,
    PaymentConfirmation,
    PayoutRequest,
    Provider,
    ProviderOrder,
    ProviderPayout,
    ProviderRefund,
    WebhookEvent,
)
from coffer.providers.mock import MockProvider
from coffer.providers.razorpay import RazorpayProvider
from coffer.providers.stripe import StripeProvider

PROVIDER_NAMES = ("mock", "razorpay", "stripe")


class Providers:
    """The enabled providers by name, and why each of the others is off."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        *,
        disabled: Mapping[str, str] | None = None,
        default: str | None = None,
    ) -> None:
        for name, provider in providers.items():
            assert provider.name == name, f"provider {provider.name!r} registered as {name!r}"
        assert default is None or default in providers, f"default provider {default!r} is off"
        self._providers = dict(providers)
        self._disabled = dict(disabled or {})
        # Where a top-up that names no provider goes (None: no provider is on).
        self.default = default

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        timeout_s: float = OUTBOUND_TIMEOUT_S,
        attempts_max: int = OUTBOUND_ATTEMPTS_MAX,
        mock_webhook_secret: str | None = None,
    ) -> Providers:
        """Every provider whose keys are set; the reasons for the others.

        `mock_webhook_secret` stands in for an unset COFFER_MOCK_WEBHOOK_SECRET (the server
        passes the one it keeps in the database, so mock orders survive a restart).
        """
        providers: dict[str, Provider] = {}
        disabled: dict[str, str] = {}

        mock_off = settings.mock_off_reason
        if mock_off is None:
            providers["mock"] = MockProvider(
                webhook_secret=_secret(settings.mock_webhook_secret) or mock_webhook_secret
            )
        else:
            disabled["mock"] = mock_off

        razorpay_key_secret = _secret(settings.razorpay_key_secret)
        missing = _missing(
            COFFER_RAZORPAY_KEY_ID=settings.razorpay_key_id,
            COFFER_RAZORPAY_KEY_SECRET=razorpay_key_secret,
        )
        if missing:
            disabled["razorpay"] = f"Razorpay is off: set {' and '.join(missing)}"
        else:
            assert settings.razorpay_key_id and razorpay_key_secret
            providers["razorpay"] = RazorpayProvider(
                key_id=settings.razorpay_key_id,
                key_secret=razorpay_key_secret,
                webhook_secret=_secret(settings.razorpay_webhook_secret),
                api_base=settings.razorpay_api_base or None,
                payout_account_number=settings.razorpay_payout_account_number or None,
                timeout_s=timeout_s,
                attempts_max=attempts_max,
            )

        stripe_api_key = _secret(settings.stripe_api_key)
        if stripe_api_key is None:
            disabled["stripe"] = "Stripe is off: set COFFER_STRIPE_API_KEY"
        else:
            providers["stripe"] = StripeProvider(
                api_key=stripe_api_key,
                publishable_key=settings.stripe_publishable_key or None,
                webhook_secret=_secret(settings.stripe_webhook_secret),
                api_base=settings.stripe_api_base or None,
                timeout_s=timeout_s,
                attempts_max=attempts_max,
            )
        default = settings.provider_default
        return cls(providers, disabled=disabled, default=default if default in providers else None)

    def get(self, name: str | None) -> Provider:
        """The provider called `name` (None: the default one); `ProviderOff` (422), naming it
        and saying why, when it is off or unknown. Never another provider in its place."""
        if name is None:
            if self.default is None:
                raise ProviderOff(
                    "no payment provider is on: configure Razorpay or Stripe keys",
                    provider=None,
                    reason="no payment provider is on",
                    fields=[_provider_field("no payment provider is on")],
                )
            name = self.default
        provider = self._providers.get(name)
        if provider is not None:
            return provider
        reason = self._disabled.get(name)
        if reason is None:
            reason = f"there is no payment provider {name!r} (known: {', '.join(PROVIDER_NAMES)})"
        raise ProviderOff(
            reason,
            provider=name,
            reason=reason,
            fields=[_provider_field(reason)],
        )

    def enabled(self) -> list[str]:
        """The names of the providers that can be used, in a stable order."""
        return sorted(self._providers)

    def disabled(self) -> dict[str, str]:
        """Each provider that is off, with the reason."""
        return dict(self._disabled)

    def public_config(self) -> dict[str, dict[str, Any]]:
        """What clients may know of each enabled provider (key ids, publishable keys)."""
        return {name: dict(self._providers[name].public_config()) for name in self.enabled()}

    def __contains__(self, name: object) -> bool:
        return name in self._providers


def _provider_field(reason: str) -> dict[str, str]:
    return {"field": "provider", "message": reason, "type": "provider_off"}


def _secret(value: Any) -> str | None:
    """A SecretStr's value, None when unset or blank (a blank secret turns a feature off)."""
    if value is None:
        return None
    raw = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return raw if raw.strip() else None


def _missing(**variables: str | None) -> list[str]:
    return [name for name, value in variables.items() if not value]


__all__ = [
    "OUTBOUND_ATTEMPTS_MAX",
    "OUTBOUND_TIMEOUT_S",
    "PROVIDER_NAMES",
    "EventKind",
    "MockProvider",
    "OrderRequest",
    "PaymentConfirmation",
    "PayoutRequest",
    "Provider",
    "ProviderOrder",
    "ProviderPayout",
    "ProviderRefund",
    "Providers",
    "RazorpayProvider",
    "StripeProvider",
    "WebhookEvent",
]
