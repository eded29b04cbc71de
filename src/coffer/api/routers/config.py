"""Public configuration, no auth needed: `GET /config/public`, `/packages`, `/gifts/catalog`,
`/plans`. Everything here is safe to show to any client: no secret ever reaches these models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Generic, Literal, TypeVar

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from coffer.api import errors
from coffer.api.deps import SettingsDep, ShopDep, get_providers
from coffer.config import ShopConfig
from coffer.providers import Providers

router = APIRouter(tags=["config"], responses=errors.responses(*errors.ANY))

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class StaticList(BaseModel, Generic[T]):
    """A whole list in one page (configuration lists are short and bounded)."""

    data: list[T]
    has_more: Literal[False] = False
    next_cursor: None = None


class AssetOut(BaseModel):
    code: str
    scale: int  # digits after the point: an amount of 12345 at scale 2 is 123.45


class CallRatesOut(BaseModel):
    asset: str
    rate_per_minute: int
    minimum_balance: int


class RatesOut(BaseModel):
    """Prices and shares, in minor units and basis points."""

    default_currency: str
    diamonds_per_unit: dict[str, int]  # diamonds per major unit (100 minor) of each currency
    topup_minimum: dict[str, int]  # the smallest top-up per currency, minor units
    agency_commission_bps: int  # the default; an agency's own rate overrides it
    platform_fee_bps: int
    escrow_platform_fee_bps: int
    payout_minimum: dict[str, int]
    call: CallRatesOut


class PublicConfigOut(BaseModel):
    # Where a top-up naming no provider goes; null when no provider is on.
    default_provider: str | None
    # Each enabled provider's public keys (Razorpay `key_id`, Stripe publishable key).
    providers: dict[str, dict[str, object]]
    assets: list[AssetOut]
    rates: RatesOut


class PackageOut(BaseModel):
    id: str
    name: str
    diamonds: int
    bonus: int
    price: int  # minor units of `currency`
    currency: str


class GiftOut(BaseModel):
    gift_type: str
    diamonds: int


class PlanOut(BaseModel):
    id: str
    name: str
    interval: str
    price: int  # minor units of `currency`
    currency: str
    # A plan priced in DIAMOND is paid from the wallet, one in money through a provider.
    pay_with: Literal["wallet", "provider"]


@router.get("/config/public", summary="Public provider keys, assets and rates")
def public_config(
    settings: SettingsDep,
    shop: ShopDep,
    providers: Annotated[Providers, Depends(get_providers)],
) -> PublicConfigOut:
    return PublicConfigOut(
        default_provider=providers.default,
        providers=providers.public_config(),
        assets=[AssetOut(code=code, scale=a.scale) for code, a in sorted(shop.assets.items())],
        rates=RatesOut(
            default_currency=shop.topup.default_currency,
            diamonds_per_unit=dict(shop.topup.diamonds_per_unit),
            topup_minimum=dict(shop.topup.minimum),
            agency_commission_bps=shop.split.agency_commission_bps,
            platform_fee_bps=shop.split.platform_fee_bps,
            escrow_platform_fee_bps=shop.escrow.platform_fee_bps,
            payout_minimum=dict(shop.payouts.minimum),
            call=CallRatesOut(
                asset=shop.calls.asset,
                rate_per_minute=shop.calls.rate_per_minute,
                minimum_balance=(
                    shop.calls.rate_per_minute
                    if shop.calls.minimum_balance is None
                    else shop.calls.minimum_balance
                ),
            ),
        ),
    )


# These lists come from the configuration, which never changes while the process runs: each is
# built once per configuration, and the routes are `async def` (no thread-pool hop).
BUILT_MAX = 48
_built: dict[tuple[str, int], tuple[ShopConfig, BaseModel]] = {}


def _once(name: str, shop: ShopConfig, build: Callable[[], M]) -> M:
    cached = _built.get((name, id(shop)))
    if cached is None or cached[0] is not shop:
        if len(_built) >= BUILT_MAX:  # a process serves one configuration; tests make many
            _built.clear()
        cached = _built[(name, id(shop))] = (shop, build())
    return cached[1]  # type: ignore[return-value]


@router.get("/packages", summary="Coin packages for sale")
async def packages(shop: ShopDep) -> StaticList[PackageOut]:
    return _once(
        "packages",
        shop,
        lambda: StaticList[PackageOut](
            data=[PackageOut.model_validate(p.model_dump()) for p in shop.packages]
        ),
    )


@router.get("/gifts/catalog", summary="Gifts and what they cost")
async def gift_catalog(shop: ShopDep) -> StaticList[GiftOut]:
    return _once(
        "gifts",
        shop,
        lambda: StaticList[GiftOut](
            data=[GiftOut.model_validate(g.model_dump()) for g in shop.gifts]
        ),
    )


@router.get("/plans", summary="Subscription plans")
async def plans(shop: ShopDep) -> StaticList[PlanOut]:
    return _once(
        "plans",
        shop,
        lambda: StaticList[PlanOut](
            data=[
                PlanOut.model_validate({**p.model_dump(), "pay_with": p.pay_with})
                for p in shop.plans
            ]
        ),
    )
