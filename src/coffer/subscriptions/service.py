"""Subscriptions: a plan paid each period, from the wallet or through the provider's billing.

- **Wallet plans** (priced in DIAMOND): the first period is charged when the subscription is
  made (wallet -> platform revenue, type `subscription`), each later one by the renewal job
  (`tasks.py`). A failed charge makes it `past_due` and is tried again on the configured days
  after the due date (`subscriptions.retry_days`); after the last it is `expired`.
- **Provider plans** (priced in money): the subscription is `pending` until the provider's first
  charge arrives by webhook (`apply_charge`); each charge books provider clearing -> platform
  revenue in the plan's currency. The provider runs its own retries; it says when it gave up.
- Every period is booked once: its start is its identity (a `subscription_periods` row, and
  the ledger key `{subscription}:period:{unix start}`), whatever order and however many times
  the renewal job or the webhooks name it.
- Access (`is_premium`) lasts to `paid_through`, whatever a later charge does. Cancelling stops
  further charges; the subscription becomes `canceled` at the end of the paid period.

State changes go through the writer (`before` locks the row under the ledger's write lock and
checks; `after` writes guarded updates), with `subscription.updated` (and `wallet.updated` for
a wallet charge) events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from coffer import ledger
from coffer.config import DIAMOND, PlanConfig, ShopConfig
from coffer.db import Database
from coffer.errors import InsufficientFunds, InvalidState, ValidationFailed
from coffer.ledger import Group, TransferRequest, Work
from coffer.subscriptions.periods import period_start, to_unix
from coffer.subscriptions.records import (
    Created,
    Subscription,
    book_period,
    current_of_user,
    emit,
    ended_values,
    find_by_provider,
    get,
    guarded_update,
    is_premium,
    list_subscriptions,
    live_of_user,
)
from coffer.subscriptions.tables import subscriptions
from coffer.wallets import service as wallets

LEDGER_SOURCE = "subscriptions"


# ---------------------------------------------------------------------------------------------
# Checks


def check_plan(
    shop: ShopConfig, *, plan_id: str, pay_with: str, provider: str | None
) -> PlanConfig:
    """The plan, if it can be paid the way asked (422 otherwise)."""
    plan = shop.plan(plan_id)
    if plan is None:
        raise ValidationFailed(
            f"there is no plan {plan_id!r}",
            fields=[{"field": "body.plan_id", "message": "unknown plan"}],
        )
    if pay_with != plan.pay_with:
        reason = (
            f"plan {plan.id} is priced in {plan.currency}: it is paid through a provider"
            if plan.pay_with == "provider"
            else f"plan {plan.id} is priced in diamonds: it is paid from the wallet"
        )
        raise ValidationFailed(
            reason, fields=[{"field": "body.pay_with", "message": f"must be {plan.pay_with}"}]
        )
    if pay_with == "wallet" and provider is not None:
        raise ValidationFailed(
            "a subscription paid from the wallet names no provider",
            fields=[{"field": "body.provider", "message": "must be absent for the wallet"}],
        )
    return plan


def _refuse_second(session: Session, user_id: str) -> None:
    live = live_of_user(session, user_id)
    if live is not None:
        raise InvalidState(
            f"user {user_id} already has a {live.status} subscription",
            subscription_id=live.id,
            status=live.status,
        )


def check_no_live(database: Database, user_id: str) -> None:
    """409 `invalid_state` if the user has a live subscription (checked again under the lock)."""
    with database.read() as session:
        _refuse_second(session, user_id)


def _user_claim(user_id: str) -> str:
    return f"subscription-user:{user_id}"


# ---------------------------------------------------------------------------------------------
# Creating


def wallet_accounts(database: Database, user_id: str) -> tuple[ledger.Account, int]:
    """The user's DIAMOND wallet and the platform's DIAMOND revenue account (opened once)."""
    with database.read() as session:
        found = ledger.find_accounts(
            session,
            [
                (DIAMOND, "user", user_id, "wallet"),
                (DIAMOND, "platform", wallets.PLATFORM_OWNER_ID, "revenue"),
            ],
        )
    if len(found) == 2:
        wallet = found[(DIAMOND, "user", user_id, "wallet")]
        revenue = found[(DIAMOND, "platform", wallets.PLATFORM_OWNER_ID, "revenue")]
        return wallet, revenue.id
    with database.unit_of_work() as session:
        wallet = wallets.wallet_account(session, user_id)
        revenue = wallets.platform_account(session, kind="revenue", asset=DIAMOND)
    return wallet, revenue.id


def charge_request(
    sub_id: str, *, wallet_id: int, revenue_id: int, amount: int, start: datetime, plan_id: str
) -> TransferRequest:
    return TransferRequest(
        debit_account_id=wallet_id,
        credit_account_id=revenue_id,
        amount=amount,
        type="subscription",
        metadata={
            "subscription_id": sub_id,
            "plan_id": plan_id,
            "period_start": start.isoformat(),
            "description": f"Subscription: {plan_id}",
        },
        idempotency_key=f"{sub_id}:period:{to_unix(start)}",
    )


def plan_wallet_subscription(
    database: Database,
    *,
    subscription_id: str,
    user_id: str,
    plan: PlanConfig,
    now: datetime,
) -> Work:
    """Charge the first period from the wallet and make the subscription `active` (402 when
    the wallet is short, 409 when the user has a live subscription)."""
    assert plan.pay_with == "wallet"
    wallets.check_user_id(user_id)
    with database.read() as session:
        wallets.check_may_spend(
            session, user_id
        )  # 403 account_frozen: a frozen wallet pays nothing
    check_no_live(database, user_id)
    wallet, revenue_id = wallet_accounts(database, user_id)
    if wallet.available < plan.price:
        raise InsufficientFunds(
            f"the plan costs {plan.price} diamonds", price=plan.price, available=wallet.available
        )
    anchor = now.replace(microsecond=0)
    end = period_start(anchor, plan.interval, 1)
    charge = charge_request(
        subscription_id,
        wallet_id=wallet.id,
        revenue_id=revenue_id,
        amount=plan.price,
        start=anchor,
        plan_id=plan.id,
    )

    def before(session: Session) -> None:
        _refuse_second(session, user_id)

    def after(session: Session, _: None, made: list[ledger.Transfer]) -> Created:
        (transfer,) = made
        session.execute(
            insert(subscriptions).values(
                {
                    **_new_row(subscription_id, user_id, plan, now=now),
                    "status": "active",
                    "anchor_at": anchor,
                    "periods_paid": 1,
                    "current_period_end": end,
                    "paid_through": end,
                    "next_charge_at": end,
                }
            )
        )
        book_period(
            session,
            sub_id=subscription_id,
            start=anchor,
            end=end,
            amount=plan.price,
            currency=DIAMOND,
            transfer_id=transfer.id,
            via="wallet",
            payment_id=None,
            now=now,
        )
        sub = emit(session, subscription_id, now=now, wallet_posted=transfer.debit_balance_after)
        return Created(sub, None)

    return Work(
        Group((charge,), LEDGER_SOURCE),
        before=before,
        after=after,
        claims=frozenset({_user_claim(user_id), subscription_id}),
    )


def _new_row(
    subscription_id: str, user_id: str, plan: PlanConfig, *, now: datetime
) -> dict[str, Any]:
    return {
        "id": subscription_id,
        "user_id": user_id,
        "live_user_id": user_id,
        "plan_id": plan.id,
        "interval": plan.interval,
        "price": plan.price,
        "currency": plan.currency,
        "pay_with": plan.pay_with,
        "periods_paid": 0,
        "cancel_at_period_end": False,
        "failed_attempts": 0,
        "created_at": now,
        "updated_at": now,
    }


def plan_pending_subscription(
    *,
    subscription_id: str,
    user_id: str,
    plan: PlanConfig,
    provider: str,
    provider_subscription_id: str,
    provider_customer_id: str | None,
    checkout: dict[str, Any],
    now: datetime,
) -> Work:
    """Record a subscription the provider opened: `pending` until its first charge arrives."""

    def before(session: Session) -> None:
        _refuse_second(session, user_id)

    def after(session: Session, _: None, __: list[ledger.Transfer]) -> Created:
        session.execute(
            insert(subscriptions).values(
                **_new_row(subscription_id, user_id, plan, now=now),
                status="pending",
                provider=provider,
                provider_subscription_id=provider_subscription_id,
                provider_customer_id=provider_customer_id,
            )
        )
        return Created(emit(session, subscription_id, now=now), checkout)

    return Work(
        None,
        before=before,
        after=after,
        claims=frozenset({_user_claim(user_id), subscription_id}),
    )


# ---------------------------------------------------------------------------------------------
# Cancelling


def cancel_work(subscription_id: str, *, now: datetime) -> Work:
    """No further charge: `canceled` at the end of the paid period (at once if none is paid
    ahead). Cancelling again answers the same."""

    def before(session: Session) -> Any:
        sub = get(session, subscription_id, for_update=True)
        if not sub.live or sub.cancel_at_period_end:
            return ledger.Done(sub)
        return sub

    def after(session: Session, sub: Subscription, _: list[ledger.Transfer]) -> Subscription:
        values: dict[str, Any]
        if sub.paid_through is None or sub.paid_through <= now:
            values = ended_values("canceled", now=now)
        else:
            values = {"cancel_at_period_end": True, "next_charge_at": sub.paid_through}
        guarded_update(session, sub, updated_at=now, **values)
        return emit(session, subscription_id, now=now)

    return Work(None, before=before, after=after, claims=frozenset({subscription_id}))


__all__ = [
    "LEDGER_SOURCE",
    "Created",
    "Subscription",
    "cancel_work",
    "charge_request",
    "check_no_live",
    "check_plan",
    "current_of_user",
    "find_by_provider",
    "get",
    "is_premium",
    "list_subscriptions",
    "live_of_user",
    "plan_pending_subscription",
    "plan_wallet_subscription",
    "wallet_accounts",
]
