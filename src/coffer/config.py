"""Configuration: `coffer.toml` for the shop, environment variables for the process and secrets.

The file (path from `COFFER_CONFIG`; built-in defaults when unset) holds what an operator tunes:
assets, the diamond price per currency, coin packages, the gift catalog, commission and fee
rates, call rates and minimums, plans and payout minimums. Secrets never live in it: they come
only from the environment (DESIGN.md, "Configuration"). A bad file is refused at start-up with
the line and the reason (`ConfigError`).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

from limits import parse_many
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from coffer.ledger.types import AMOUNT_MAX

Amount = Annotated[int, Field(strict=True, gt=0, le=AMOUNT_MAX)]
Bps = Annotated[int, Field(strict=True, ge=0, le=10_000)]
AssetCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,15}$")]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]

DIAMOND = "DIAMOND"
JWT_SECRET_BYTES_MIN = 32
# The real providers, in the order an unset COFFER_DEFAULT_PROVIDER is resolved in.
REAL_PROVIDER_NAMES = ("razorpay", "stripe")
TRUSTED_PROXIES_MAX = 64

Environment = Literal["development", "production"]
ProviderName = Literal["mock", "razorpay", "stripe"]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """The configuration file is unusable; the message names the line and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AssetConfig(_Strict):
    scale: Annotated[int, Field(strict=True, ge=0, le=18)]


class PackageConfig(_Strict):
    id: Slug
    name: Annotated[str, Field(min_length=1, max_length=64)]
    diamonds: Amount
    bonus: Annotated[int, Field(strict=True, ge=0, le=AMOUNT_MAX)] = 0
    price: Amount  # minor units of `currency`
    currency: AssetCode = "INR"


class GiftConfig(_Strict):
    gift_type: Slug
    diamonds: Amount


class PlanConfig(_Strict):
    """A subscription plan. Priced in DIAMOND it is paid from the wallet (the renewal job
    charges each period); priced in money, through the provider's own recurring billing."""

    id: Slug
    interval: Literal["month", "year"]
    price: Amount  # minor units of `currency`
    currency: AssetCode = "INR"
    name: Annotated[str, Field(max_length=64)] = ""

    @property
    def pay_with(self) -> Literal["wallet", "provider"]:
        return "wallet" if self.currency == DIAMOND else "provider"


RETRY_DAYS_MAX = 10
RETRY_DAY_MAX = 60


class SubscriptionConfig(_Strict):
    # A failed renewal is tried again this many days after the due date, while `past_due`;
    # after the last one the subscription expires. Strictly increasing.
    retry_days: Annotated[
        list[Annotated[int, Field(strict=True, gt=0, le=RETRY_DAY_MAX)]],
        Field(max_length=RETRY_DAYS_MAX),
    ] = [1, 2, 3]

    @field_validator("retry_days")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(later <= earlier for earlier, later in pairwise(value)):
            raise ValueError("retry days must be strictly increasing")
        return value


class TopupConfig(_Strict):
    # Diamonds bought by one major unit (100 minor) of each currency: INR 10 means ₹1 = 10 💎.
    diamonds_per_unit: dict[AssetCode, Amount] = {"INR": 10, "USD": 800, "HTG": 6}
    # The smallest top-up, in each currency's minor units.
    minimum: dict[AssetCode, Amount] = {"INR": 1_000, "USD": 100, "HTG": 1_000}
    default_currency: AssetCode = "INR"


class SplitConfig(_Strict):
    # A gift's or a call's value is split: the receiver's agency takes its commission, the
    # platform its fee, the host the rest. An agency's own rate overrides the default.
    agency_commission_bps: Bps = 1_000
    platform_fee_bps: Bps = 2_000

    @model_validator(mode="after")
    def _fits(self) -> SplitConfig:
        if self.agency_commission_bps + self.platform_fee_bps > 10_000:
            raise ValueError("agency commission and platform fee together exceed 100 %")
        return self


class CallConfig(_Strict):
    asset: AssetCode = DIAMOND
    rate_per_minute: Amount = 60
    # Below this (minor units of the call's asset) a call cannot start; unset: one minute's price.
    minimum_balance: Annotated[int, Field(strict=True, ge=0, le=AMOUNT_MAX)] | None = None
    hold_minutes: Annotated[int, Field(strict=True, gt=0, le=240)] = 5


class EscrowConfig(_Strict):
    platform_fee_bps: Bps = 500


class PayoutConfig(_Strict):
    # The smallest payout, in minor units of the asset asked for (earnings in DIAMOND, or INR).
    minimum: dict[AssetCode, Amount] = {"INR": 10_000, "USD": 1_000, "DIAMOND": 1_000}
    # What earnings are paid out in, and the redemption rate: how many diamonds buy one major
    # unit of it (100 = ₹1 for 100 💎). Payout amounts are rounded down to the minor unit.
    currency: AssetCode = "INR"
    diamonds_per_unit: Annotated[int, Field(strict=True, gt=0, le=1_000_000_000)] = 100
    # Where a Stripe connected account's onboarding sends the user back (not a secret).
    onboarding_return_url: Annotated[
        str, Field(pattern=r"^https?://[^\s]{1,500}$", max_length=512)
    ] = "https://example.com/coffer/payees/return"


class ShopConfig(_Strict):
    """What the operator tunes in `coffer.toml`."""

    assets: dict[AssetCode, AssetConfig] = {
        "INR": AssetConfig(scale=2),
        "USD": AssetConfig(scale=2),
        "HTG": AssetConfig(scale=2),
        DIAMOND: AssetConfig(scale=0),
    }
    topup: TopupConfig = TopupConfig()
    packages: list[PackageConfig] = [
        PackageConfig(id="starter", name="Starter", diamonds=100, bonus=0, price=9_900),
        PackageConfig(id="basic", name="Basic", diamonds=250, bonus=40, price=22_900),
        PackageConfig(id="popular", name="Popular", diamonds=500, bonus=100, price=44_900),
        PackageConfig(id="premium", name="Premium", diamonds=1_000, bonus=250, price=84_900),
        PackageConfig(id="mega", name="Mega", diamonds=2_500, bonus=750, price=199_900),
        PackageConfig(id="ultra", name="Ultra", diamonds=5_000, bonus=2_000, price=349_900),
        PackageConfig(id="supreme", name="Supreme", diamonds=10_000, bonus=5_000, price=599_900),
        PackageConfig(
            id="ultimate", name="Ultimate", diamonds=25_000, bonus=15_000, price=1_299_900
        ),
    ]
    gifts: list[GiftConfig] = [
        GiftConfig(gift_type="rose", diamonds=1),
        GiftConfig(gift_type="heart", diamonds=10),
        GiftConfig(gift_type="teddy", diamonds=50),
        GiftConfig(gift_type="crown", diamonds=100),
        GiftConfig(gift_type="rocket", diamonds=500),
        GiftConfig(gift_type="castle", diamonds=1_000),
    ]
    split: SplitConfig = SplitConfig()
    calls: CallConfig = CallConfig()
    escrow: EscrowConfig = EscrowConfig()
    plans: list[PlanConfig] = [
        PlanConfig(id="premium-monthly", interval="month", price=9_900, name="Premium"),
        PlanConfig(id="premium-yearly", interval="year", price=99_900, name="Premium"),
        PlanConfig(
            id="premium-diamond-monthly",
            interval="month",
            price=990,
            currency=DIAMOND,
            name="Premium (diamonds)",
        ),
    ]
    subscriptions: SubscriptionConfig = SubscriptionConfig()
    payouts: PayoutConfig = PayoutConfig()

    @model_validator(mode="after")
    def _consistent(self) -> ShopConfig:
        if DIAMOND not in self.assets:
            raise ValueError("assets must include DIAMOND")
        known = set(self.assets)
        for where, codes in (
            ("topup.diamonds_per_unit", self.topup.diamonds_per_unit),
            ("topup.minimum", self.topup.minimum),
            ("payouts.minimum", self.payouts.minimum),
        ):
            unknown = set(codes) - known
            if unknown:
                raise ValueError(f"{where} names unknown assets {sorted(unknown)}")
        if self.topup.default_currency not in self.topup.diamonds_per_unit:
            raise ValueError("topup.default_currency has no diamonds_per_unit")
        for items, what in ((self.packages, "package"), (self.plans, "plan")):
            ids = [item.id for item in items]
            if len(ids) != len(set(ids)):
                raise ValueError(f"{what} ids must be unique")
            for item in items:
                if item.currency not in known:
                    raise ValueError(f"{what} {item.id} uses unknown currency {item.currency}")
        gift_types = [g.gift_type for g in self.gifts]
        if len(gift_types) != len(set(gift_types)):
            raise ValueError("gift types must be unique")
        if self.payouts.currency not in known or self.payouts.currency == DIAMOND:
            raise ValueError(f"payouts.currency {self.payouts.currency} is not a known currency")
        if self.calls.asset not in known:
            raise ValueError(f"calls.asset {self.calls.asset} is not a known asset")
        return self

    def package(self, package_id: str) -> PackageConfig | None:
        return next((p for p in self.packages if p.id == package_id), None)

    def plan(self, plan_id: str) -> PlanConfig | None:
        return next((p for p in self.plans if p.id == plan_id), None)

    def gift(self, gift_type: str) -> GiftConfig | None:
        return next((g for g in self.gifts if g.gift_type == gift_type), None)


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


def load_shop(path: Path | None) -> ShopConfig:
    """The shop configuration from `path`, or the built-in defaults when there is none."""
    if path is None:
        return ShopConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from exc
    return parse_shop(text, source=str(path))


def parse_shop(text: str, *, source: str = "coffer.toml") -> ShopConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    try:
        return ShopConfig.model_validate(raw)
    except ValidationError as exc:
        lines = _key_lines(text)
        reasons = []
        for error in exc.errors():
            location = tuple(error["loc"])
            line = _line_of(lines, location)
            where = ".".join(str(part) for part in location) or "(top level)"
            at = f"line {line}" if line else "the file"
            reasons.append(f"{source}: {at}: {where}: {error['msg']}")
        raise ConfigError("\n".join(reasons)) from exc


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"]+)\s*=")


def _key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Where each table, array element and key stands in the file (1-based lines)."""
    found: dict[tuple[Any, ...], int] = {}
    table: tuple[Any, ...] = ()
    array_counts: dict[tuple[Any, ...], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            path = tuple(part.strip().strip('"') for part in header.group(2).split("."))
            if header.group(1) == "[[":
                index = array_counts.get(path, 0)
                array_counts[path] = index + 1
                table = (*path, index)
            else:
                table = path
            found.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            found.setdefault((*table, key.group(1).strip('"')), number)
    return found


def _line_of(lines: dict[tuple[Any, ...], int], location: tuple[Any, ...]) -> int | None:
    for length in range(len(location), 0, -1):
        line = lines.get(location[:length])
        if line is not None:
            return line
    return None


__all__ = [
    "ConfigError",
    "Settings",
    "ShopConfig",
    "load_shop",
    "parse_shop",
]
