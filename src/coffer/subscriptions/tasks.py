"""The renewal job: charge wallet plans when a period falls due, retry failed charges on the
configured days, close subscriptions whose cancelled period ended, expire provider ones the
provider never charged again.

Rows are claimed first: a short transaction takes the due rows (`FOR UPDATE SKIP LOCKED` on
PostgreSQL, so jobs in several processes take different rows; SQLite has one writer anyway) and
leases them for `LEASE_S`. Each claimed row is then one unit of work for the writer, which
checks again under the ledger's write lock that the row is still due for the same period, and
the period's ledger key and `subscription_periods` row are unique: however often and however
concurrently the job runs, a period is charged once.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import or_, select

from coffer import ledger
from coffer.config import ShopConfig
from coffer.db import Database, Writer, claims
from coffer.errors import CofferError
from coffer.kit.clock import Clock
from coffer.subscriptions import billing, service
from coffer.subscriptions.tables import subscriptions
from coffer.wallets import service as wallets

log = structlog.get_logger(__name__)

BATCH_SIZE_MAX = 100
# What the wallet's answer to a charge may be that counts as a failed attempt (past_due, retry).
CHARGE_REFUSALS = frozenset({"insufficient_funds", "account_frozen"})
# A claimed row is left alone by other jobs this long; a job that died frees it by expiry.
LEASE_S = 120


def claim_due(database: Database, clock: Clock, *, limit: int = BATCH_SIZE_MAX) -> list[str]:
    """Lease up to `limit` rows whose next charge (or end) is due; their ids, oldest due first."""
    assert 0 < limit <= BATCH_SIZE_MAX * 10
    now = clock()
    due = (
        select(subscriptions.c.id)
        .where(
            subscriptions.c.status.in_(("active", "past_due")),
            subscriptions.c.next_charge_at <= now,
            or_(subscriptions.c.claimed_until.is_(None), subscriptions.c.claimed_until < now),
        )
        .order_by(subscriptions.c.next_charge_at, subscriptions.c.id)
        .limit(limit)
    )
    return claims.claim(
        database,
        due,
        table=subscriptions,
        lease=subscriptions.c.claimed_until,
        until=now + timedelta(seconds=LEASE_S),
    )


def renew_due(
    database: Database,
    writer: Writer,
    clock: Clock,
    shop: ShopConfig,
    *,
    limit: int = BATCH_SIZE_MAX,
) -> int:
    """Charge, retry, close or expire each due subscription once; how many changed."""
    changed = 0
    retry_days = list(shop.subscriptions.retry_days)
    for subscription_id in claim_due(database, clock, limit=limit):
        now = clock()
        with database.read() as session:
            sub = service.get(session, subscription_id)
        if sub.pay_with == "wallet" and not sub.cancel_at_period_end:
            wallet, revenue_id = service.wallet_accounts(database, sub.user_id)
            work = billing.renewal_work(sub, wallet_id=wallet.id, revenue_id=revenue_id, now=now)
            try:
                with database.read() as session:
                    wallets.check_may_spend(session, sub.user_id)  # frozen: a failed attempt
                outcome = writer.run(work)
            except (ledger.LedgerError, CofferError) as exc:
                code = getattr(exc, "code", None)
                if code not in CHARGE_REFUSALS:
                    # The database or the writer, not the wallet: the lease lapses and the
                    # row is tried again, no attempt counted.
                    log.warning(
                        "subscription_renewal_failed", subscription_id=sub.id, error=repr(exc)
                    )
                    continue
                outcome = writer.run(
                    billing.renewal_failed_work(
                        sub, reason=f"{code}: {exc}", retry_days=retry_days, now=now
                    )
                )
        else:
            outcome = writer.run(billing.settle_due_work(sub, retry_days=retry_days, now=now))
        if outcome not in (None, "skipped"):
            changed += 1
    return changed


__all__ = ["BATCH_SIZE_MAX", "LEASE_S", "claim_due", "renew_due"]
