"""The process's settings: environment variables `COFFER_*` over built-in defaults. Secrets live
only here, never in the shop's file (DESIGN.md, "Configuration")."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from limits import parse_many
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coffer.config.shop import ConfigError, ShopConfig, load_shop

JWT_SECRET_BYTES_MIN = 32
# The real providers, in the order an unset COFFER_DEFAULT_PROVIDER is resolved in.
REAL_PROVIDER_NAMES = ("razorpay", "stripe")
TRUSTED_PROXIES_MAX = 64

Environment = Literal["development", "production"]
ProviderName = Literal["mock", "razorpay", "stripe"]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Settings(BaseSettings):
    """The process's settings: environment variables `COFFER_*` over built-in defaults."""

    model_config = SettingsConfigDict(env_prefix="COFFER_", extra="ignore", frozen=True)

    config: Path | None = None
    database_url: str = "sqlite:///./coffer.db"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65_535)] = 8000
    # `production` turns the sandbox off for good and requires COFFER_JWT_SECRET.
    env: Environment = "development"
    jwt_secret: SecretStr | None = None
    # Unset: the mock while it is on, else the one real provider configured (see
    # `provider_default`). A provider named here must be on, or the server refuses to start.
    default_provider: ProviderName | None = None
    redis_url: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Requests per principal (API key or user), in the `limits` notation: "600/minute" or
    # "20/second;600/minute". Counted in Redis when redis_url is set, else in memory.
    rate_limit: str = "600/minute"
    # Failed authentications per client address, and per presented credential: past it a
    # failing attempt is answered 429, not 401. A credential that verifies is never refused.
    auth_failure_rate_limit: str = "60/minute"
    # Peers whose X-Forwarded-For / Forwarded headers name the client: comma-separated IPs or
    # CIDRs (e.g. "10.0.0.0/8,127.0.0.1"). Empty: the headers are ignored, the peer is the client.
    trusted_proxies: str = ""

    razorpay_key_id: str | None = None
    razorpay_key_secret: SecretStr | None = None
    razorpay_webhook_secret: SecretStr | None = None
    razorpay_api_base: str | None = None
    # RazorpayX business account that payouts are drawn from; payouts are off without it.
    razorpay_payout_account_number: str | None = None

    stripe_api_key: SecretStr | None = None
    stripe_publishable_key: str | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str | None = None

    mock_webhook_secret: SecretStr | None = None
    # The sandbox credits diamonds nobody paid for (DESIGN.md, "Sandbox and live"). Unset: on in
    # development while no real provider is configured. True: on beside real providers in
    # development (announced at every start); refused in production. False: off.
    mock_enabled: bool | None = None

    # Outbound webhooks (outbound/urls.py): in production an endpoint must be https and resolve
    # to public addresses only; true lifts the address rule (a host app on the private network).
    webhook_allow_private: bool = False

    # Group commit (db/writer.py): money-moving requests share batches. Off, each commits in a
    # transaction of its own (for side-by-side figures in `coffer bench --http`).
    group_commit: bool = True
    # Group commit (ledger/batch.py), for writers that go through it.
    ledger_batch_size_max: Annotated[int, Field(gt=0, le=100_000)] = 1_000
    ledger_queue_size_max: Annotated[int, Field(gt=0, le=1_000_000)] = 10_000
    ledger_wait_max_ms: Annotated[float, Field(ge=0, le=1_000)] = 0.0

    # The payment success-rate floor (analytics/tasks.py): when the rate of the orders created
    # in the last window falls below the floor, an alert is raised, once per crossing. Fewer
    # decided attempts than the minimum decide nothing, so 1 failure of 1 does not fire.
    payment_success_floor: Annotated[float, Field(gt=0, le=1)] = 0.90
    payment_success_window_s: Annotated[int, Field(ge=60, le=7 * 86_400)] = 3_600
    payment_success_attempts_min: Annotated[int, Field(ge=1, le=1_000_000)] = 20

    # Live event streams (SSE and WebSocket; events/live.py). Events older than the retention
    # are purged; a stream resuming from before that is told `reset`.
    event_retention_days: Annotated[int, Field(ge=1, le=3_650)] = 30
    # Per process: each `coffer serve` (or worker) counts its own streams.
    stream_connections_per_user_max: Annotated[int, Field(ge=1, le=100)] = 5
    stream_connections_max: Annotated[int, Field(ge=1, le=100_000)] = 1_000
    # SSE comments / WebSocket pings on an idle stream, so proxies keep it open.
    stream_heartbeat_s: Annotated[float, Field(gt=0, le=300)] = 15.0
    # The safety net under the wake-ups (NOTIFY, Redis, the writer's own): look anyway.
    stream_poll_s: Annotated[float, Field(gt=0, le=300)] = 5.0

    @field_validator(
        "jwt_secret",
        "razorpay_key_secret",
        "razorpay_webhook_secret",
        "stripe_api_key",
        "stripe_webhook_secret",
        "mock_webhook_secret",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # An empty secret disables what it guards rather than accepting anything (STYLE 9).
        return None if value == "" else value

    @field_validator("rate_limit", "auth_failure_rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        try:
            parsed = parse_many(value)
        except ValueError:
            parsed = []
        if not parsed:
            raise ValueError(f"not a rate limit: {value!r} (write e.g. '600/minute')")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret_strong(cls, value: SecretStr | None) -> SecretStr | None:
        # HS256 with a short secret can be brute-forced offline from a single token.
        if value is not None and len(value.get_secret_value().encode()) < JWT_SECRET_BYTES_MIN:
            raise ValueError(f"must be at least {JWT_SECRET_BYTES_MIN} bytes long")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies_parse(cls, value: str) -> str:
        _parse_networks(value)
        return value

    @cached_property
    def shop(self) -> ShopConfig:
        return load_shop(self.config)

    @cached_property
    def trusted_proxy_networks(self) -> tuple[IpNetwork, ...]:
        """COFFER_TRUSTED_PROXIES, parsed once."""
        return _parse_networks(self.trusted_proxies)

    @property
    def real_providers_configured(self) -> list[str]:
        """The real providers whose keys are set, in REAL_PROVIDER_NAMES order."""
        configured = {
            "razorpay": bool(self.razorpay_key_id and _has(self.razorpay_key_secret)),
            "stripe": _has(self.stripe_api_key),
        }
        return [name for name in REAL_PROVIDER_NAMES if configured[name]]

    @property
    def mock_off_reason(self) -> str | None:
        """Why the mock provider is off, or None when it is on (the policy in one place)."""
        if self.env == "production":
            return "the mock provider is off in production (COFFER_ENV=production)"
        if self.mock_enabled is False:
            return "the mock provider is off: COFFER_MOCK_ENABLED is false"
        real = self.real_providers_configured
        if self.mock_enabled is None and real:
            return (
                f"the mock provider is off because {' and '.join(real)} is configured "
                "(set COFFER_MOCK_ENABLED=true to use it beside them in development)"
            )
        return None

    @property
    def mock_on(self) -> bool:
        return self.mock_off_reason is None

    @property
    def mock_beside_real_providers(self) -> bool:
        """The mock forced on next to real keys: the server announces it at every start."""
        return self.mock_on and bool(self.real_providers_configured)

    @property
    def provider_default(self) -> str | None:
        """The provider a top-up that names none goes to; None when no provider is on."""
        if self.default_provider is not None:
            return self.default_provider
        if self.mock_on:
            return "mock"
        real = self.real_providers_configured
        return real[0] if real else None

    def startup_refusals(self) -> list[str]:
        """Why a server with these settings must not start (empty when it may)."""
        refusals = []
        if self.env == "production":
            if self.mock_enabled is True:
                refusals.append(
                    "COFFER_MOCK_ENABLED=true is refused in production: the mock provider "
                    "credits diamonds nobody paid for (unset it, or set COFFER_ENV=development)"
                )
            if self.jwt_secret is None:
                refusals.append(
                    "COFFER_JWT_SECRET is required in production (at least "
                    f"{JWT_SECRET_BYTES_MIN} bytes): a generated one lives only in the database"
                )
        chosen = self.default_provider
        if chosen is not None:
            off = self.mock_off_reason if chosen == "mock" else None
            if chosen != "mock" and chosen not in self.real_providers_configured:
                off = f"{chosen} has no keys configured"
            if off is not None:
                refusals.append(
                    f"COFFER_DEFAULT_PROVIDER={chosen} names a provider that is off: {off}"
                )
        elif len(self.real_providers_configured) > 1 and not self.mock_on:
            configured = ", ".join(self.real_providers_configured)
            refusals.append(
                f"COFFER_DEFAULT_PROVIDER is required when several real providers are configured "
                f"({configured}): name the one top-ups use by default"
            )
        return refusals

    def refuse_bad_startup(self) -> None:
        """ConfigError listing every reason these settings cannot serve, if there is one."""
        refusals = self.startup_refusals()
        if refusals:
            raise ConfigError("\n".join(refusals))


def _has(secret: SecretStr | None) -> bool:
    return secret is not None and bool(secret.get_secret_value().strip())


def _parse_networks(text: str) -> tuple[IpNetwork, ...]:
    """ "10.0.0.0/8, 127.0.0.1" as networks; ValueError naming the entry that is not one."""
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if len(entries) > TRUSTED_PROXIES_MAX:
        raise ValueError(f"at most {TRUSTED_PROXIES_MAX} entries")
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR: {entry!r}") from None
    return tuple(networks)
