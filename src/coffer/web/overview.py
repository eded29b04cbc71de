"""The overview's figures, read through the same functions the admin API uses.

The payment, gift, user and circulation figures are `GET /admin/stats`'s (coffer.audit.stats).
Queue counts are of bounded pages (`COUNT_MAX`): a queue of 500 or more shows as "500+", which
is all an operator needs from a tile, and no tile scans a table. The chart is the payments
analytics' (`GET /admin/analytics/payments`) over the last `CHART_DAYS` UTC days.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from coffer import alerts, outbound
from coffer.analytics import payments as analytics
from coffer.audit import stats as audit_stats
from coffer.db import Database
from coffer.kyc import service as kyc
from coffer.payouts import records as payouts

COUNT_MAX = 500
CHART_DAYS = 30
_PAGE_MAX = 500
SETTLED = ("succeeded", "partially_refunded", "refunded", "disputed")


def _count(lister: Callable[..., tuple[list[Any], bool]], session: Session, **filters: Any) -> str:
    found, has_more = lister(session, limit=COUNT_MAX, **filters)
    return f"{len(found)}+" if has_more else str(len(found))


@dataclass
class Tiles:
    total_users: int = 0
    payments_count: int = 0
    payments_succeeded: int = 0
    payments_volume: dict[str, int] = field(default_factory=dict)
    gifts_count: int = 0
    gifts_diamonds: int = 0
    diamonds_in_circulation: int = 0
    payouts_pending: str = "0"
    payouts_failed: str = "0"
    kyc_submitted: str = "0"
    endpoints_enabled: int = 0
    endpoints_disabled: int = 0
    deliveries_failed: str = "0"
    deliveries_pending: str = "0"
    open_alerts: list[alerts.Alert] = field(default_factory=list)
    as_of: datetime | None = None


@dataclass
class Chart:
    days: list[str]
    volume: dict[str, list[int]]
    succeeded: list[int]
    failed: list[int]
    success_rate: list[float | None]

    def as_json(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "volume": self.volume,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "success_rate": self.success_rate,
        }


def tiles(database: Database, *, now: datetime) -> Tiles:
    since = now - timedelta(days=CHART_DAYS)
    made = Tiles(as_of=now)
    with database.read() as session:
        # The figures of GET /admin/stats, over the same last 30 days.
        stats = audit_stats.platform_stats(session, created_from=since, created_to=now)
        made.total_users = stats.total_users
        made.payments_count = stats.payments.count
        made.payments_succeeded = sum(
            n for status, n in stats.payments.by_status.items() if status in SETTLED
        )
        made.payments_volume = dict(stats.payments.volume)
        made.gifts_count, made.gifts_diamonds = stats.gifts.count, stats.gifts.diamonds
        made.diamonds_in_circulation = stats.diamonds_in_circulation
        made.payouts_pending = _count(payouts.list_payouts, session, status="pending")
        made.payouts_failed = _count(payouts.list_payouts, session, status="failed")
        made.kyc_submitted = _count(kyc.list_kyc, session, status="submitted")
        endpoints, _ = outbound.list_endpoints(session, limit=_PAGE_MAX, before=None, status=None)
        made.endpoints_enabled = sum(1 for e in endpoints if e.status == "enabled")
        made.endpoints_disabled = len(endpoints) - made.endpoints_enabled
        made.deliveries_failed = _count(
            outbound.list_deliveries, session, before=None, endpoint_id=None, status="failed"
        )
        made.deliveries_pending = _count(
            outbound.list_deliveries, session, before=None, endpoint_id=None, status="pending"
        )
        raised, _ = alerts.list_alerts(session, limit=_PAGE_MAX)
        made.open_alerts = [a for a in raised if a.resolved_at is None]
    return made


def chart(database: Database, *, now: datetime) -> Chart:
    """Per UTC day of the last CHART_DAYS: orders paid and failed, volume by currency and the
    success rate, from the payments analytics (`GET /admin/analytics/payments`), so the chart
    and the API define every figure the same way."""
    start = (now - timedelta(days=CHART_DAYS - 1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    days = [(start + timedelta(days=i)).date().isoformat() for i in range(CHART_DAYS)]
    index = {day: i for i, day in enumerate(days)}
    succeeded, failed = [0] * CHART_DAYS, [0] * CHART_DAYS
    volume: dict[str, list[int]] = {}
    with database.snapshot() as session:  # one instant; its rows are streamed
        report = analytics.payment_report(
            session, start=start, end=now, group_by="day", tz=analytics.zone("UTC")
        )
    for bucket in report.buckets:
        i = index.get(bucket.start.date().isoformat())
        if i is None:
            continue
        succeeded[i] += bucket.tally.succeeded
        failed[i] += bucket.tally.failed
        volume.setdefault(bucket.currency, [0] * CHART_DAYS)[i] += bucket.tally.volume
    rate = [analytics.ratio(s, s + f) for s, f in zip(succeeded, failed, strict=True)]
    return Chart(
        days, volume, succeeded, failed, [None if r is None else round(r, 4) for r in rate]
    )
