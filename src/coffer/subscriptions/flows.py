"""The one place that puts subscriptions' units of work around provider calls. The provider is
asked first, outside any transaction (a slow provider holds no lock); the unit then records
what it answered, checking again under the writer's lock what was checked before."""

from __future__ import annotations

from datetime import datetime

from coffer.config import ShopConfig
from coffer.db import Database, Writer
from coffer.errors import NotFound
from coffer.ledger import Work
from coffer.providers import Providers
from coffer.providers.base import SubscriptionRequest
from coffer.subscriptions import service
from coffer.subscriptions.service import Subscription


def plan_subscribe(
    database: Database,
    providers: Providers,
    shop: ShopConfig,
    *,
    subscription_id: str,
    user_id: str,
    plan_id: str,
    pay_with: str,
    provider_name: str | None,
    now: datetime,
) -> Work:
    """The unit that makes a subscription: a wallet plan's first charge, or a provider plan's
    pending record after the provider opened it (the provider call happens here, before)."""
    plan = service.check_plan(shop, plan_id=plan_id, pay_with=pay_with, provider=provider_name)
    if plan.pay_with == "wallet":
        return service.plan_wallet_subscription(
            database, subscription_id=subscription_id, user_id=user_id, plan=plan, now=now
        )
    provider = providers.get(provider_name)  # 422 naming it when it is off
    service.check_no_live(database, user_id)
    opened = provider.create_subscription(
        SubscriptionRequest(
            subscription_id=subscription_id,
            plan_id=plan.id,
            plan_name=plan.name or plan.id,
            interval=plan.interval,
            amount=plan.price,
            currency=plan.currency,
            customer_id=user_id,
        )
    )
    return service.plan_pending_subscription(
        subscription_id=subscription_id,
        user_id=user_id,
        plan=plan,
        provider=provider.name,
        provider_subscription_id=opened.provider_subscription_id,
        provider_customer_id=opened.customer_id,
        checkout=dict(opened.checkout),
        now=now,
    )


def cancel(
    database: Database,
    providers: Providers,
    writer: Writer,
    *,
    user_id: str,
    now: datetime,
) -> Subscription:
    """Cancel the user's live subscription at the end of its paid period: the provider is told
    first (so it charges no more), then the row is marked (404 when there is none)."""
    with database.read() as session:
        sub = service.live_of_user(session, user_id)
    if sub is None:
        raise NotFound(f"user {user_id} has no live subscription", user_id=user_id)
    if sub.pay_with == "provider" and not sub.cancel_at_period_end:
        assert sub.provider is not None and sub.provider_subscription_id is not None
        providers.get(sub.provider).cancel_subscription(
            provider_subscription_id=sub.provider_subscription_id
        )
    cancelled: Subscription = writer.run(service.cancel_work(sub.id, now=now))
    return cancelled


__all__ = ["cancel", "plan_subscribe"]
