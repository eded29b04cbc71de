"""Payment analytics: every figure defined here once, with its denominator.

An order counts in the bucket of its `created_at` (when the buyer came), in the time zone asked
for, by its status now. One row per (bucket start, currency): money of different currencies is
never added up.

Each figure: what is counted; its denominator after "/" (the figure is null when that is 0).

- `count`: orders created in the bucket.
- `abandoned`: orders never attempted: status `created`, or `cancelled` with no provider payment.
- `succeeded`: orders paid: `succeeded`, `partially_refunded`, `refunded` (a later refund does
  not unmake the payment).
- `failed`: `failed`, or `cancelled` after an attempt (the order has a provider payment id).
- `pending`: attempted, not decided yet: `count - abandoned - succeeded - failed`.
- `success_rate`: `succeeded` / `succeeded + failed`, the decided attempts (abandoned and
  pending orders are left out).
- `success_rate_by_volume`: amount of the succeeded orders / amount of the succeeded and the
  failed orders.
- `volume`: amount of the succeeded orders, minor units of `currency`, gross (a refund is a
  transfer of its own): what the ledger's `purchase` transfers credited to revenue for them.
- `average_order_value`: `volume // succeeded` (floor, minor units) / `succeeded`.
- `failure_reasons[].share`: failed orders with that code (`failure_reason`; `cancelled` for a
  cancelled attempt; `unknown`) / every failed order in the range, all currencies.
- `webhook_latency_ms`: p50, p95, p99 (nearest rank, to 3 significant digits) of `received_at`
  minus the provider's event time (the order's `created_at` when the event has none), over the
  payment webhooks received in the range / those webhooks.
- `first_attempt_delivery_rate`: outbound attempts in the range that were the first of their
  round and were answered 2xx / first attempts in the range (`coffer.outbound.figures`).

Cost: the range is at most `RANGE_MAX`; orders are read by the `created_at` index in chunks of
`CHUNK_ROWS` and folded into one accumulator per (bucket, currency) as they stream, webhooks by
the `received_at` index into a histogram of bounded size. Bucketing happens in Python because
SQLite and PostgreSQL do not share date functions, let alone time zones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from coffer.errors import ValidationFailed
from coffer.outbound.figures import figures as delivery_figures
from coffer.payments.service import SETTLED
from coffer.payments.tables import payment_orders
from coffer.webhooks.tables import inbox

GroupBy = Literal["day", "week", "month"]
GROUPS: tuple[GroupBy, ...] = ("day", "week", "month")
RANGE_DEFAULT = timedelta(days=30)
RANGE_MAX = timedelta(days=366)
FAILURE_REASONS_MAX = 10
CHUNK_ROWS = 1_000
PERCENTILES = (50, 95, 99)
TZ_LENGTH_MAX = 64
# The provider events a payment's webhook latency is measured on.
PAYMENT_EVENT_KINDS = (
    "payment.succeeded",
    "payment.failed",
    "payment.processing",
    "payment.cancelled",
)
_SIGNIFICANT_DIGITS = 3


# ---------------------------------------------------------------------------------------------
# The per-order definitions (the table above): one place, used by the report and the alert.


def is_abandoned(status: str, provider_payment_id: str | None) -> bool:
    """Never attempted: still `created`, or cancelled before any provider payment."""
    return status == "created" or (status == "cancelled" and provider_payment_id is None)


def is_succeeded(status: str) -> bool:
    return status in SETTLED


def is_failed(status: str, provider_payment_id: str | None) -> bool:
    return status == "failed" or (status == "cancelled" and provider_payment_id is not None)


def _failed_sql() -> ColumnElement[bool]:
    """`is_failed` as SQL, for the failure-reason table's GROUP BY (keep the two alike)."""
    o = payment_orders.c
    attempted = o.provider_payment_id.isnot(None)
    return or_(o.status == "failed", and_(o.status == "cancelled", attempted))


def _failure_code_sql() -> ColumnElement[str]:
    o = payment_orders.c
    return case(
        (o.status == "cancelled", "cancelled"),
        else_=func.coalesce(o.failure_reason, "unknown"),
    )


def ratio(numerator: int, denominator: int) -> float | None:
    """A share in 0..1; None when there is nothing to divide by."""
    assert 0 <= numerator <= denominator, (numerator, denominator)
    return numerator / denominator if denominator else None


@dataclass(slots=True)
class Tally:
    """Orders folded one at a time: the counts and sums every figure is made of."""

    count: int = 0
    abandoned: int = 0
    succeeded: int = 0
    failed: int = 0
    volume: int = 0  # minor units: the succeeded orders' amounts
    failed_volume: int = 0  # minor units: the failed orders' amounts

    def add(self, *, status: str, provider_payment_id: str | None, amount: int) -> None:
        assert amount > 0
        self.count += 1
        if is_abandoned(status, provider_payment_id):
            self.abandoned += 1
        elif is_succeeded(status):
            self.succeeded += 1
            self.volume += amount
        elif is_failed(status, provider_payment_id):
            self.failed += 1
            self.failed_volume += amount
        assert self.abandoned + self.succeeded + self.failed <= self.count

    @property
    def pending(self) -> int:
        return self.count - self.abandoned - self.succeeded - self.failed

    @property
    def decided(self) -> int:
        """The success rate's denominator: attempts that succeeded or failed."""
        return self.succeeded + self.failed

    @property
    def success_rate(self) -> float | None:
        return ratio(self.succeeded, self.decided)

    @property
    def success_rate_by_volume(self) -> float | None:
        return ratio(self.volume, self.volume + self.failed_volume)

    @property
    def average_order_value(self) -> int | None:
        return self.volume // self.succeeded if self.succeeded else None


# ---------------------------------------------------------------------------------------------
# Inputs: the time zone and the range


def zone(name: str) -> ZoneInfo:
    """An IANA time zone by name; an unknown one is a 422."""
    refused = ValidationFailed(
        f"unknown time zone {name[:TZ_LENGTH_MAX]!r} (an IANA name such as Asia/Kolkata)",
        fields=[{"field": "query.tz", "message": "unknown time zone"}],
    )
    if not name or len(name) > TZ_LENGTH_MAX:
        raise refused
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a path-like name
        raise refused from exc


def resolve_range(
    start: datetime | None, end: datetime | None, *, now: datetime
) -> tuple[datetime, datetime]:
    """[start, end): by default the last 30 days to now; never longer than RANGE_MAX."""
    if end is None:
        end = now if start is None else min(now, start + RANGE_DEFAULT)
    if start is None:
        start = end - RANGE_DEFAULT
    if end <= start:
        raise ValidationFailed(
            "to must be after from", fields=[{"field": "query.to", "message": "not after from"}]
        )
    if end - start > RANGE_MAX:
        raise ValidationFailed(
            f"the range is at most {RANGE_MAX.days} days",
            fields=[{"field": "query.from", "message": f"more than {RANGE_MAX.days} days"}],
            days_max=RANGE_MAX.days,
        )
    return start, end


def bucket_start(at: datetime, *, group_by: GroupBy, tz: ZoneInfo) -> datetime:
    """The local midnight, local Monday or local 1st of the month that starts `at`'s bucket."""
    day = at.astimezone(tz).date()
    if group_by == "week":
        day -= timedelta(days=day.weekday())
    elif group_by == "month":
        day = day.replace(day=1)
    return datetime.combine(day, time(0), tzinfo=tz)


# ---------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime  # aware, in the asked time zone
    currency: str
    tally: Tally


@dataclass(frozen=True, slots=True)
class FailureReason:
    code: str
    count: int
    share: float  # of every failed order in the range


@dataclass(frozen=True, slots=True)
class Latency:
    p50: int | None
    p95: int | None
    p99: int | None
    count: int  # webhooks measured


@dataclass(frozen=True, slots=True)
class Report:
    start: datetime
    end: datetime
    group_by: GroupBy
    tz: str
    buckets: list[Bucket]
    failure_reasons: list[FailureReason]
    failed: int  # the failure shares' denominator
    webhook_latency_ms: Latency
    first_attempt_delivery_rate: float | None


def payment_report(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    group_by: GroupBy,
    tz: ZoneInfo,
    provider: str | None = None,
    currency: str | None = None,
) -> Report:
    """Every figure of the module docstring over orders created in [start, end)."""
    assert group_by in GROUPS
    assert start < end and end - start <= RANGE_MAX, "resolve_range bounds it"
    filters = _order_filters(start=start, end=end, provider=provider, currency=currency)
    o = payment_orders.c
    rows = session.execute(
        select(o.created_at, o.status, o.provider_payment_id, o.amount, o.currency)
        .where(*filters)
        .order_by(o.created_at, o.id)
        .execution_options(yield_per=CHUNK_ROWS)
    )
    tallies: dict[tuple[datetime, str], Tally] = {}
    starts: dict[date, datetime] = {}  # a UTC date's orders mostly share a bucket: look up once
    for row in rows:
        at: datetime = row.created_at
        begins = _cached_start(starts, at, group_by=group_by, tz=tz)
        tally = tallies.get((begins, row.currency))
        if tally is None:
            tally = tallies[(begins, row.currency)] = Tally()
        tally.add(status=row.status, provider_payment_id=row.provider_payment_id, amount=row.amount)
    buckets = [Bucket(s, c, t) for (s, c), t in sorted(tallies.items())]
    failed = sum(b.tally.failed for b in buckets)
    reasons = failure_reasons(session, filters=filters, failed=failed)
    latency = webhook_latency(session, start=start, end=end, provider=provider)
    delivery = delivery_figures(session, start=start, end=end)
    return Report(
        start=start,
        end=end,
        group_by=group_by,
        tz=tz.key,
        buckets=buckets,
        failure_reasons=reasons,
        failed=failed,
        webhook_latency_ms=latency,
        first_attempt_delivery_rate=delivery.first_attempt_rate,
    )


def _cached_start(
    starts: dict[date, datetime], at: datetime, *, group_by: GroupBy, tz: ZoneInfo
) -> datetime:
    """`bucket_start`, computed once per local date."""
    local_day = at.astimezone(tz).date()
    found = starts.get(local_day)
    if found is None:
        found = starts[local_day] = bucket_start(at, group_by=group_by, tz=tz)
    return found


def _order_filters(
    *, start: datetime, end: datetime, provider: str | None, currency: str | None
) -> list[ColumnElement[bool]]:
    o = payment_orders.c
    filters = [o.created_at >= start, o.created_at < end]
    if provider is not None:
        filters.append(o.provider == provider)
    if currency is not None:
        filters.append(o.currency == currency)
    return filters


def failure_reasons(
    session: Session, *, filters: Iterable[ColumnElement[bool]], failed: int
) -> list[FailureReason]:
    """The most frequent failure codes (at most FAILURE_REASONS_MAX), each with its share of
    every failed order in the range; most frequent first, then by code."""
    code = _failure_code_sql().label("code")
    counted = func.count().label("n")
    rows = session.execute(
        select(code, counted)
        .where(*filters, _failed_sql())
        .group_by(code)
        .order_by(counted.desc(), code)
        .limit(FAILURE_REASONS_MAX)
    ).all()
    found = [(str(r.code), int(r.n)) for r in rows]
    if sum(n for _, n in found) > failed:  # the two reads disagree: survives python -O
        raise AssertionError("failure reasons count more failures than the orders did")
    return [FailureReason(c, n, n / failed) for c, n in found if failed]


# ---------------------------------------------------------------------------------------------
# Webhook latency


@dataclass(slots=True)
class Histogram:
    """Counts of values rounded to 3 significant digits: at most 900 keys a decade, so memory is
    bounded whatever the number of values, and a percentile is off by under 1 %."""

    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0

    def add(self, value: int) -> None:
        value = max(value, 0)  # a provider's clock ahead of ours is not a negative latency
        key = _rounded(value)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.total += 1

    def percentile(self, p: int) -> int | None:
        """Nearest rank: the smallest value with at least p % of the values at or below it."""
        assert 0 < p <= 100
        if not self.total:
            return None
        rank = math.ceil(p / 100 * self.total)
        seen = 0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen >= rank:
                return key
        raise AssertionError("ranks add up to the total")


def _rounded(value: int) -> int:
    digits = len(str(value)) - _SIGNIFICANT_DIGITS
    if digits <= 0:
        return value
    unit = int(10**digits)
    return value // unit * unit


def webhook_latency(
    session: Session, *, start: datetime, end: datetime, provider: str | None = None
) -> Latency:
    """Percentiles of how long payment webhooks took to reach us (see the module docstring)."""
    i = inbox.c
    query = select(i.received_at, i.occurred_at, i.provider, i.event).where(
        i.received_at >= start, i.received_at < end, i.kind.in_(PAYMENT_EVENT_KINDS)
    )
    if provider is not None:
        query = query.where(i.provider == provider)
    histogram = Histogram()
    undated: list[tuple[datetime, str, str]] = []
    for row in session.execute(query.execution_options(yield_per=CHUNK_ROWS)):
        if row.occurred_at is not None:
            histogram.add(_ms(row.received_at - row.occurred_at))
            continue
        order_id = _provider_order_id(row.event)
        if order_id is not None:
            undated.append((row.received_at, row.provider, order_id))
        if len(undated) >= CHUNK_ROWS:
            _add_by_order_time(session, histogram, undated)
            undated = []
    _add_by_order_time(session, histogram, undated)
    p50, p95, p99 = (histogram.percentile(p) for p in PERCENTILES)
    return Latency(p50=p50, p95=p95, p99=p99, count=histogram.total)


def _add_by_order_time(
    session: Session, histogram: Histogram, undated: list[tuple[datetime, str, str]]
) -> None:
    """Events the provider did not date: measured from their order's creation (one query a
    chunk per provider)."""
    o = payment_orders.c
    for name in sorted({p for _, p, _ in undated}):
        wanted = sorted({order_id for _, p, order_id in undated if p == name})
        created = dict(
            session.execute(
                select(o.provider_order_id, o.created_at).where(
                    o.provider == name, o.provider_order_id.in_(wanted)
                )
            ).tuples()
        )
        for received_at, p, order_id in undated:
            if p == name and order_id in created:
                histogram.add(_ms(received_at - created[order_id]))


def _provider_order_id(event_json: str) -> str | None:
    try:
        value: Any = json.loads(event_json).get("provider_order_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _ms(delta: timedelta) -> int:
    return int(delta / timedelta(milliseconds=1))


# ---------------------------------------------------------------------------------------------
# The success rate over a window, for the floor alert


def window_tally(session: Session, *, start: datetime, end: datetime) -> Tally:
    """Orders created in [start, end), all currencies, folded into one tally by the same rules
    as the report (the alert's success rate is by count, so currencies may share it)."""
    assert start < end
    o = payment_orders.c
    rows = session.execute(
        select(o.status, o.provider_payment_id, o.amount)
        .where(o.created_at >= start, o.created_at < end)
        .execution_options(yield_per=CHUNK_ROWS)
    )
    tally = Tally()
    for row in rows:
        tally.add(status=row.status, provider_payment_id=row.provider_payment_id, amount=row.amount)
    return tally


__all__ = [
    "GROUPS",
    "RANGE_DEFAULT",
    "RANGE_MAX",
    "Bucket",
    "FailureReason",
    "GroupBy",
    "Histogram",
    "Latency",
    "Report",
    "Tally",
    "bucket_start",
    "is_abandoned",
    "is_failed",
    "is_succeeded",
    "payment_report",
    "ratio",
    "resolve_range",
    "window_tally",
    "zone",
]
