"""Admin: payment analytics (admin key). The figures are defined in `coffer.analytics.payments`."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from coffer import analytics
from coffer.analytics.payments import TZ_LENGTH_MAX, Bucket, Report
from coffer.api import errors
from coffer.api.deps import AdminPrincipal, DatabaseDep, clock_of
from coffer.api.pagination import TimeBound, parse_time

router = APIRouter(
    prefix="/admin/analytics", tags=["admin"], responses=errors.responses(*errors.AUTHENTICATED)
)

Share = Annotated[float, Field(ge=0, le=1)]


class BucketOut(BaseModel):
    start: datetime  # local midnight / Monday / 1st of the month, with the zone's offset
    currency: str
    count: int
    abandoned: int
    pending: int
    succeeded: int
    failed: int
    success_rate: Share | None
    success_rate_by_volume: Share | None
    volume: int  # minor units of `currency`
    average_order_value: int | None  # minor units of `currency`

    @classmethod
    def of(cls, b: Bucket) -> BucketOut:
        t = b.tally
        return cls(
            start=b.start,
            currency=b.currency,
            count=t.count,
            abandoned=t.abandoned,
            pending=t.pending,
            succeeded=t.succeeded,
            failed=t.failed,
            success_rate=t.success_rate,
            success_rate_by_volume=t.success_rate_by_volume,
            volume=t.volume,
            average_order_value=t.average_order_value,
        )


class FailureReasonOut(BaseModel):
    code: str
    count: int
    share: Share


class LatencyOut(BaseModel):
    p50: int | None
    p95: int | None
    p99: int | None
    count: int


class PaymentAnalyticsOut(BaseModel):
    start: datetime
    end: datetime
    group_by: Literal["day", "week", "month"]
    tz: str
    buckets: list[BucketOut]
    failure_reasons: list[FailureReasonOut]
    webhook_latency_ms: LatencyOut
    first_attempt_delivery_rate: Share | None

    @classmethod
    def of(cls, r: Report) -> PaymentAnalyticsOut:
        return cls(
            start=r.start,
            end=r.end,
            group_by=r.group_by,
            tz=r.tz,
            buckets=[BucketOut.of(b) for b in r.buckets],
            failure_reasons=[
                FailureReasonOut.model_validate(f, from_attributes=True) for f in r.failure_reasons
            ],
            webhook_latency_ms=LatencyOut.model_validate(
                r.webhook_latency_ms, from_attributes=True
            ),
            first_attempt_delivery_rate=r.first_attempt_delivery_rate,
        )


def _bound(value: str | None, *, name: str, zone: ZoneInfo) -> datetime | None:
    """A timestamp, or a date meaning its local midnight in `tz` (so a day's buckets are
    whole); everywhere else in the API a date is midnight UTC."""
    if value is not None and len(value.strip()) == 10:
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            pass  # parse_time refuses it with the usual message
        else:
            return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    return parse_time(value, name=name)


@router.get(
    "/payments",
    responses=errors.responses(422),
    summary="Payment success rates, volume and failures by day, week or month",
)
def payment_analytics(
    request: Request,
    _: AdminPrincipal,
    database: DatabaseDep,
    created_from: Annotated[TimeBound, Query(alias="from")] = None,
    created_to: Annotated[TimeBound, Query(alias="to")] = None,
    group_by: Literal["day", "week", "month"] = "day",
    tz: Annotated[str, Query(min_length=1, max_length=TZ_LENGTH_MAX)] = "UTC",
    provider: Literal["mock", "razorpay", "stripe"] | None = None,
    currency: Annotated[str | None, Query(pattern=r"^[A-Z][A-Z0-9_]{0,15}$")] = None,
) -> PaymentAnalyticsOut:
    zone = analytics.zone(tz)
    start, end = analytics.resolve_range(
        _bound(created_from, name="from", zone=zone),
        _bound(created_to, name="to", zone=zone),
        now=clock_of(request)(),
    )
    with database.snapshot() as session:  # one instant; its rows are streamed
        report = analytics.payment_report(
            session,
            start=start,
            end=end,
            group_by=group_by,
            tz=zone,
            provider=provider,
            currency=currency,
        )
    return PaymentAnalyticsOut.of(report)
