"""Subscription rows: the record, its reads, and the guarded writes every change shares
(see `service.py` for the rules)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.orm import Session

from coffer import events, ledger
from coffer.config import DIAMOND
from coffer.db import pages
from coffer.errors import NotFound
from coffer.kit.clock import rfc3339
from coffer.subscriptions.periods import period_start
from coffer.subscriptions.tables import LIVE_STATUSES, subscription_periods, subscriptions

LIST_LIMIT_MAX = 500


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    user_id: str
    plan_id: str
    interval: str
    price: int
    currency: str
    pay_with: str
    provider: str | None
    provider_subscription_id: str | None
    provider_customer_id: str | None
    status: str
    anchor_at: datetime | None
    periods_paid: int
    current_period_end: datetime | None
    paid_through: datetime | None
    cancel_at_period_end: bool
    next_charge_at: datetime | None
    failed_attempts: int
    last_failure: str | None
    canceled_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES

    def is_premium(self, now: datetime) -> bool:
        """Access lasts to `paid_through`, whatever happened to a later charge."""
        return self.paid_through is not None and now < self.paid_through

    def period_start(self, index: int) -> datetime:
        assert self.anchor_at is not None
        return period_start(self.anchor_at, self.interval, index)


def from_row(row: Row[Any]) -> Subscription:
    m = row._mapping
    return Subscription(**{name: m[name] for name in Subscription.__slots__})


@dataclass(frozen=True, slots=True)
class Created:
    """A new subscription and what the client needs to authorise its payments."""

    subscription: Subscription
    checkout: dict[str, Any] | None


# ---------------------------------------------------------------------------------------------
# Reads


def get(session: Session, subscription_id: str, *, for_update: bool = False) -> Subscription:
    query = select(subscriptions).where(subscriptions.c.id == subscription_id)
    if for_update:
        query = query.with_for_update()
    row = session.execute(query).first()
    if row is None:
        raise NotFound(f"no subscription {subscription_id}", subscription_id=subscription_id)
    return from_row(row)


def live_of_user(session: Session, user_id: str) -> Subscription | None:
    row = session.execute(
        select(subscriptions).where(subscriptions.c.live_user_id == user_id)
    ).first()
    return None if row is None else from_row(row)


def current_of_user(session: Session, user_id: str) -> Subscription | None:
    """The user's live subscription, else the newest one (canceled or expired), else None."""
    live = live_of_user(session, user_id)
    if live is not None:
        return live
    row = session.execute(
        select(subscriptions)
        .where(subscriptions.c.user_id == user_id)
        .order_by(subscriptions.c.created_at.desc(), subscriptions.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else from_row(row)


def is_premium(session: Session, user_id: str, *, now: datetime) -> bool:
    """Whether any of the user's subscriptions paid for `now` (a canceled one may still)."""
    row = session.execute(
        select(subscriptions.c.id)
        .where(subscriptions.c.user_id == user_id, subscriptions.c.paid_through > now)
        .limit(1)
    ).first()
    return row is not None


def find_by_provider(
    session: Session, *, provider: str, provider_subscription_id: str, for_update: bool = False
) -> Subscription | None:
    query = select(subscriptions).where(
        subscriptions.c.provider == provider,
        subscriptions.c.provider_subscription_id == provider_subscription_id,
    )
    if for_update:
        query = query.with_for_update()
    row = session.execute(query).first()
    return None if row is None else from_row(row)


def list_subscriptions(
    session: Session,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
    status: str | None = None,
    user_id: str | None = None,
) -> tuple[list[Subscription], bool]:
    """Newest first, keyset-paged on (created_at, id); returns (subscriptions, has_more)."""
    assert 0 < limit <= LIST_LIMIT_MAX
    rows, has_more = pages.newest_first(
        session,
        select(subscriptions),
        at=subscriptions.c.created_at,
        id_=subscriptions.c.id,
        limit=limit,
        before=before,
        equal=((subscriptions.c.status, status), (subscriptions.c.user_id, user_id)),
    )
    return [from_row(r) for r in rows], has_more


def period_booked(session: Session, subscription_id: str, start: datetime) -> bool:
    row = session.execute(
        select(subscription_periods.c.transfer_id).where(
            subscription_periods.c.subscription_id == subscription_id,
            subscription_periods.c.period_start == start,
        )
    ).first()
    return row is not None


# ---------------------------------------------------------------------------------------------
# Events


def events_of(sub: Subscription, *, wallet_posted: int | None = None) -> list[events.NewEvent]:
    data = {
        "subscription_id": sub.id,
        "plan_id": sub.plan_id,
        "status": sub.status,
        "current_period_end": _when(sub.current_period_end),
        "paid_through": _when(sub.paid_through),
        "cancel_at_period_end": sub.cancel_at_period_end,
    }
    made = [events.NewEvent(sub.user_id, "subscription.updated", data)]
    if wallet_posted is not None:
        made.append(
            events.NewEvent(
                sub.user_id,
                "wallet.updated",
                {"kind": "wallet", "asset": DIAMOND, "posted": wallet_posted, "cause": sub.id},
            )
        )
    return made


def _when(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


def emit(session: Session, subscription_id: str, *, now: datetime, **extra: Any) -> Subscription:
    sub = get(session, subscription_id)
    events.emit(session, events_of(sub, **extra), now=now)
    return sub


def book_period(
    session: Session,
    *,
    sub_id: str,
    start: datetime,
    end: datetime,
    amount: int,
    currency: str,
    transfer_id: int,
    via: str,
    payment_id: str | None,
    now: datetime,
) -> None:
    session.execute(
        insert(subscription_periods).values(
            subscription_id=sub_id,
            period_start=start,
            period_end=end,
            amount=amount,
            currency=currency,
            transfer_id=transfer_id,
            via=via,
            provider_payment_id=payment_id,
            created_at=now,
        )
    )


def ended_values(status: str, *, now: datetime) -> dict[str, Any]:
    assert status in ("canceled", "expired")
    return {
        "status": status,
        "live_user_id": None,
        "next_charge_at": None,
        "claimed_until": None,
        "canceled_at": now if status == "canceled" else None,
    }


def guarded_update(session: Session, sub: Subscription, **values: Any) -> None:
    """Update the row only if nobody moved it since `sub` was read under the lock."""
    result = session.execute(
        update(subscriptions)
        .where(
            subscriptions.c.id == sub.id,
            subscriptions.c.status == sub.status,
            subscriptions.c.periods_paid == sub.periods_paid,
            subscriptions.c.failed_attempts == sub.failed_attempts,
        )
        .values(**values)
    )
    count: int = result.rowcount  # type: ignore[attr-defined]
    if count != 1:
        raise ledger.InvariantViolated(f"subscription {sub.id} changed under its lock")
