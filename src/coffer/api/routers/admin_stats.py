"""Admin: the platform at a glance (`GET /admin/stats`), over a bounded range."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from coffer.api import errors
from coffer.api.deps import AdminPrincipal, DatabaseDep, clock_of
from coffer.api.filters import bounded_range
from coffer.api.pagination import TimeBound, time_range
from coffer.audit import stats as stats_service
from coffer.audit.schemas import SummaryLineOut
from coffer.gifts.schemas import GiftStatsOut

router = APIRouter(
    prefix="/admin", tags=["admin"], responses=errors.responses(*errors.AUTHENTICATED)
)


class PlatformOut(BaseModel):
    total_users: int
    diamonds_in_circulation: int = Field(description="held by users and agencies, posted")


class PaymentsOut(BaseModel):
    count: int
    by_status: dict[str, int]
    volume: dict[str, int] = Field(description="succeeded orders' amounts per currency")


class TransactionsOut(BaseModel):
    count: int
    summary: list[SummaryLineOut]


class StatsOut(BaseModel):
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    platform: PlatformOut
    payments: PaymentsOut
    gifts: GiftStatsOut
    transactions: TransactionsOut


@router.get(
    "/stats",
    summary="Users, diamonds in circulation, payments, gifts and transactions (last 30 days "
    "unless from/to; at most 366 days)",
)
def stats(
    _: AdminPrincipal,
    database: DatabaseDep,
    request: Request,
    created_from: Annotated[TimeBound, Query(alias="from")] = None,
    created_to: Annotated[TimeBound, Query(alias="to")] = None,
) -> StatsOut:
    start, end = bounded_range(*time_range(created_from, created_to), now=clock_of(request)())
    with database.read() as session:
        found = stats_service.platform_stats(session, created_from=start, created_to=end)
    return StatsOut(
        from_=found.created_from,
        to=found.created_to,
        platform=PlatformOut(
            total_users=found.total_users, diamonds_in_circulation=found.diamonds_in_circulation
        ),
        payments=PaymentsOut.model_validate(found.payments, from_attributes=True),
        gifts=GiftStatsOut.of(
            found.gifts, created_from=found.created_from, created_to=found.created_to
        ),
        transactions=TransactionsOut(
            count=sum(line.count for line in found.transactions),
            summary=[
                SummaryLineOut(
                    asset=s.asset, type=s.type, status=s.status, count=s.count, sum=s.amount
                )
                for s in found.transactions
            ],
        ),
    )
