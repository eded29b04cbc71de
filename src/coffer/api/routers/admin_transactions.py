"""Admin: every transaction in the ledger, searched and summarised, as JSON pages or CSV."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from coffer.api import errors
from coffer.api.csv_stream import csv_chunks, csv_response
from coffer.api.deps import AdminPrincipal, DatabaseDep
from coffer.api.filters import AssetFilter, TypeFilter, parse_types
from coffer.api.pagination import Cursor, Limit, TimeBound, decode_cursor, encode_cursor, time_range
from coffer.audit import transactions
from coffer.audit.schemas import SummaryLineOut, TransactionOut
from coffer.auth import USER_ID_LENGTH_MAX, USER_ID_PATTERN
from coffer.db import Database
from coffer.errors import ValidationFailed
from coffer.kit.clock import rfc3339

router = APIRouter(
    prefix="/admin", tags=["admin"], responses=errors.responses(*errors.AUTHENTICATED)
)

UserFilter = Annotated[str | None, Query(pattern=USER_ID_PATTERN, max_length=USER_ID_LENGTH_MAX)]
StatusFilter = Annotated[
    str | None,
    Query(max_length=100, description="posted, pending, voided or expired; several by commas"),
]
CSV_COLUMNS = (
    "id",
    "group_id",
    "created_at",
    "type",
    "status",
    "asset",
    "amount",
    "debit_account_id",
    "debit_owner",
    "debit_kind",
    "credit_account_id",
    "credit_owner",
    "credit_kind",
    "pending_id",
    "reversal_of",
)


class TransactionPageOut(BaseModel):
    data: list[TransactionOut]
    has_more: bool
    next_cursor: str | None
    summary: list[SummaryLineOut]


async def _filters(
    user_id: UserFilter = None,
    type_: TypeFilter = None,
    status: StatusFilter = None,
    asset: AssetFilter = None,
    created_from: Annotated[TimeBound, Query(alias="from")] = None,
    created_to: Annotated[TimeBound, Query(alias="to")] = None,
) -> transactions.TransactionFilters:
    start, end = time_range(created_from, created_to)
    statuses = parse_types(status, name="status")
    if statuses is not None:
        unknown = sorted(set(statuses) - set(transactions.STATUSES))
        if unknown:
            raise ValidationFailed(
                f"unknown status {unknown[0]!r}: use {', '.join(transactions.STATUSES)}",
                fields=[{"field": "query.status", "message": "unknown status"}],
            )
    types = parse_types(type_)
    return transactions.TransactionFilters(
        user_id=user_id,
        types=tuple(types) if types is not None else None,
        statuses=tuple(statuses) if statuses is not None else None,
        asset=asset,
        created_from=start,
        created_to=end,
    )


FiltersDep = Annotated[transactions.TransactionFilters, Depends(_filters)]


def _before_id(cursor: str | None) -> int | None:
    value = decode_cursor(cursor)
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise ValidationFailed(
            "cursor is not one this list gave",
            fields=[{"field": "query.cursor", "message": "bad cursor"}],
        )
    return value


@router.get("/transactions", summary="Every transaction, newest first, with a summary")
def list_transactions(
    _: AdminPrincipal,
    database: DatabaseDep,
    filters: FiltersDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TransactionPageOut:
    before_id = _before_id(cursor)
    with database.read() as session:
        page = transactions.search(session, filters, limit=limit, before_id=before_id)
        lines = transactions.summary(session, filters)
    return TransactionPageOut(
        data=[TransactionOut.of(t) for t in page.items],
        has_more=page.next_before_id is not None,
        next_cursor=None if page.next_before_id is None else encode_cursor(page.next_before_id),
        summary=[
            SummaryLineOut(asset=s.asset, type=s.type, status=s.status, count=s.count, sum=s.amount)
            for s in lines
        ],
    )


@router.get(
    "/transactions.csv",
    summary="Every matching transaction as CSV (streamed in constant memory)",
    response_class=StreamingResponse,
)
def transactions_csv(
    _: AdminPrincipal, database: DatabaseDep, filters: FiltersDep
) -> StreamingResponse:
    return csv_response(csv_lines(database, filters), filename="transactions.csv")


def csv_lines(
    database: Database,
    filters: transactions.TransactionFilters,
    *,
    page_size: int = transactions.PAGE_SIZE_MAX,
) -> Iterator[str]:
    """The export, a chunk of rows at a time; memory stays one page of the search."""
    rows = (
        (
            t.id,
            t.group_id,
            rfc3339(t.created_at),
            t.type,
            t.status,
            t.asset,
            t.amount,
            t.debit.account_id,
            f"{t.debit.owner_type}:{t.debit.owner_id}",
            t.debit.kind,
            t.credit.account_id,
            f"{t.credit.owner_type}:{t.credit.owner_id}",
            t.credit.kind,
            t.pending_id if t.pending_id is not None else "",
            t.reversal_of if t.reversal_of is not None else "",
        )
        for t in transactions.iter_transactions(database.read, filters, page_size=page_size)
    )
    return csv_chunks(CSV_COLUMNS, rows)
