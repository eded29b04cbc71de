"""The payouts' bounded job: reconcile payouts the provider never reported back on.

Each run claims at most `BATCH_SIZE_MAX` payouts that are still `pending` or `processing` and
due a check, in one short transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so processes
running the job at once take different rows; on SQLite the write transaction is the database's
lock, and the claim moves `next_check_at` on, so a second run finds nothing). It then asks the
provider about each with no transaction open: a payout never sent (a crash, an outage) is sent
again under its own idempotency key, one sent is looked up, and the answer is booked through
the writer, forward only. A payout still unsettled after `ATTEMPTS_MAX` checks raises an alert.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy import select, update

from coffer import alerts
from coffer.db import Database, Writer
from coffer.errors import CofferError
from coffer.kit.clock import Clock
from coffer.payouts import flows, records
from coffer.payouts.records import Payout
from coffer.payouts.tables import payouts
from coffer.providers import Providers

log = structlog.get_logger(__name__)

BATCH_SIZE_MAX = 50
ATTEMPTS_MAX = 12
BACKOFF_BASE_S = 60
BACKOFF_MAX_S = 6 * 3_600


def _backoff_s(attempts: int) -> int:
    delay_s: int = min(BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), BACKOFF_MAX_S)
    return delay_s


def claim_due(database: Database, *, now: datetime, limit: int = BATCH_SIZE_MAX) -> list[Payout]:
    """Take the payouts due a check for this run: each is checked again only after a backoff."""
    assert 0 < limit <= BATCH_SIZE_MAX * 10
    with database.unit_of_work() as session:
        rows = session.execute(
            select(payouts)
            .where(payouts.c.status.in_(("pending", "processing")), payouts.c.next_check_at <= now)
            .order_by(payouts.c.next_check_at, payouts.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        claimed = [records.from_row(row) for row in rows]
        for payout in claimed:
            attempts = payout.reconcile_attempts + 1
            session.execute(
                update(payouts)
                .where(payouts.c.id == payout.id, payouts.c.next_check_at <= now)
                .values(
                    reconcile_attempts=attempts,
                    next_check_at=now + timedelta(seconds=_backoff_s(attempts)),
                )
            )
    return claimed


def reconcile_payouts(
    database: Database,
    providers: Providers,
    clock: Clock,
    *,
    writer: Writer | None = None,
    limit: int = BATCH_SIZE_MAX,
) -> int:
    """Settle what the providers say of payouts they never reported; returns how many were
    asked about."""
    claimed = claim_due(database, now=clock(), limit=limit)
    for payout in claimed:
        error: str | None = None
        try:
            checked = flows.check_payout(
                database, providers, payout=payout, clock=clock, writer=writer
            )
            if checked.status not in ("pending", "processing"):
                continue
        except CofferError as exc:
            error = exc.message
            log.warning("payout_reconcile_failed", payout_id=payout.id, error=str(exc))
        if payout.reconcile_attempts + 1 >= ATTEMPTS_MAX:
            with database.unit_of_work() as session:
                alerts.raise_alert(
                    session,
                    kind="payout.unreconciled",
                    severity="critical",
                    message=(
                        f"payout {payout.id} is still {payout.status} at {payout.provider} "
                        f"after {payout.reconcile_attempts + 1} checks; settle it by hand"
                    ),
                    now=clock(),
                    subject_id=payout.id,
                    details={"provider_payout_id": payout.provider_payout_id, "error": error},
                )
    return len(claimed)
