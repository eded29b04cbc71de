"""The platform at a glance (`GET /admin/stats`), every figure bounded: the platform's from a
few account rows, the rest over a range of at most a year read through indexes or the
ledger's daily totals. Nothing here sums a whole table's history."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from coffer.gifts import service as gifts
from coffer.gifts.service import GiftStats
from coffer.ledger import search as ledger_search
from coffer.ledger import tables as ledger_tables
from coffer.payments.tables import payment_orders
from coffer.wallets.tables import users

# Who holds diamonds that are not in circulation: the platform's own books. Diamonds in
# circulation are the rest (users' wallets and earnings, agencies): the asset's accounts sum
# to zero, so that is minus what these few accounts hold, and no user account is read.
INSTITUTIONS = ("platform", "system", "provider")
SUCCEEDED = ("succeeded", "partially_refunded", "refunded")


@dataclass(frozen=True, slots=True)
class PaymentStats:
    count: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    volume: dict[str, int] = field(default_factory=dict)  # succeeded amount per currency


@dataclass(frozen=True, slots=True)
class Stats:
    created_from: datetime
    created_to: datetime
    total_users: int
    diamonds_in_circulation: int
    payments: PaymentStats
    gifts: GiftStats
    transactions: list[ledger_search.SummaryLine]


def platform_stats(session: Session, *, created_from: datetime, created_to: datetime) -> Stats:
    return Stats(
        created_from=created_from,
        created_to=created_to,
        total_users=int(session.execute(select(func.count()).select_from(users)).scalar_one()),
        diamonds_in_circulation=circulation(session, "DIAMOND"),
        payments=_payments(session, created_from, created_to),
        gifts=gifts.gift_stats(session, created_from=created_from, created_to=created_to),
        transactions=ledger_search.summary(
            session, ledger_search.Filters(created_from=created_from, created_to=created_to)
        ),
    )


def circulation(session: Session, asset: str) -> int:
    """What everyone but the platform holds of `asset` (posted): one short index range."""
    a = ledger_tables.accounts
    held = session.execute(
        select(func.coalesce(func.sum(a.c.credits_posted - a.c.debits_posted), 0)).where(
            a.c.asset == asset, a.c.owner_type.in_(INSTITUTIONS)
        )
    ).scalar_one()
    return -int(held)


def _payments(session: Session, start: datetime, end: datetime) -> PaymentStats:
    o = payment_orders
    rows = session.execute(
        select(o.c.status, o.c.currency, func.count(), func.sum(o.c.amount))
        .where(o.c.created_at >= start, o.c.created_at < end)
        .group_by(o.c.status, o.c.currency)
    ).all()
    by_status: dict[str, int] = {}
    volume: dict[str, int] = {}
    for status, currency, count, amount in rows:
        by_status[status] = by_status.get(status, 0) + int(count)
        if status in SUCCEEDED:
            volume[currency] = volume.get(currency, 0) + int(amount)
    return PaymentStats(sum(by_status.values()), by_status, volume)


__all__ = ["Stats", "circulation", "platform_stats"]
