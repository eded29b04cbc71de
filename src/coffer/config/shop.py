"""The shop's configuration: `coffer.toml`, what an operator tunes (assets, the diamond price per
currency, coin packages, the gift catalog, commission and fee rates, call rates and minimums,
plans and payout minimums). A bad file is refused at start-up with the line and the reason
(`ConfigError`)."""

from __future__ import annotations

import re
import tomllib
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coffer.ledger.types import AMOUNT_MAX

Amount = Annotated[int, Field(strict=True, gt=0, le=AMOUNT_MAX)]
Bps = Annotated[int, Field(strict=True, ge=0, le=10_000)]
AssetCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,15}$")]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]

DIAMOND = "DIAMOND"


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
