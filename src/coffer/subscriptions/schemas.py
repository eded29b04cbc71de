"""What the API takes and gives for subscriptions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coffer.subscriptions.service import Created, Subscription
from coffer.wallets.schemas import UserWithBalancesOut

PlanId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class SubscribeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan_id: PlanId
    pay_with: Literal["wallet", "provider"]
    provider: Literal["mock", "razorpay", "stripe"] | None = None


class SubscriptionOut(BaseModel):
    id: str
    user_id: str
    plan_id: str
    interval: str
    price: int  # minor units of `currency`, each period
    currency: str
    pay_with: str
    provider: str | None
    provider_subscription_id: str | None
    status: str
    current_period_end: datetime | None
    paid_through: datetime | None
    cancel_at_period_end: bool
    created_at: datetime
    # What the client needs to authorise the recurring payment (only when just created
    # through a provider): Razorpay {"key_id", "subscription_id"}, Stripe {"client_secret",
    # "publishable_key"}, mock {"subscription_id"}.
    checkout: dict[str, Any] | None = None

    @classmethod
    def of(cls, sub: Subscription, *, checkout: dict[str, Any] | None = None) -> SubscriptionOut:
        fields = {name: getattr(sub, name) for name in cls.model_fields if name != "checkout"}
        return cls(**fields, checkout=checkout)


class SubscriptionEnvelope(BaseModel):
    subscription: SubscriptionOut

    @classmethod
    def of(cls, created: Created | Subscription) -> SubscriptionEnvelope:
        if isinstance(created, Created):
            return cls(
                subscription=SubscriptionOut.of(created.subscription, checkout=created.checkout)
            )
        return cls(subscription=SubscriptionOut.of(created))


class MySubscriptionOut(BaseModel):
    """`GET /subscriptions/me` (API.md): without a subscription `is_premium` is false and the
    rest null."""

    is_premium: bool
    plan_id: str | None
    status: str | None
    current_period_end: datetime | None
    paid_through: datetime | None
    cancel_at_period_end: bool | None

    @classmethod
    def of(cls, sub: Subscription | None, *, is_premium: bool) -> MySubscriptionOut:
        if sub is None:
            return cls(
                is_premium=is_premium,
                plan_id=None,
                status=None,
                current_period_end=None,
                paid_through=None,
                cancel_at_period_end=None,
            )
        return cls(
            is_premium=is_premium,
            plan_id=sub.plan_id,
            status=sub.status,
            current_period_end=sub.current_period_end,
            paid_through=sub.paid_through,
            cancel_at_period_end=sub.cancel_at_period_end,
        )


class SubscriptionPageOut(BaseModel):
    data: list[SubscriptionOut]
    has_more: bool
    next_cursor: str | None


class MeOut(UserWithBalancesOut):
    """`GET /me`: the user, its accounts, and whether a subscription pays for now."""

    is_premium: bool
