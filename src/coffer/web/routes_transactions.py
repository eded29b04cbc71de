"""Transactions: the platform-wide search (coffer.audit.transactions, the same as
`GET /admin/transactions`) with every filter, keyset pages, a summary by type and status, and
a streamed CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from coffer.audit import transactions
from coffer.auth import is_user_id
from coffer.errors import CofferError, ValidationFailed
from coffer.web import paging, state
from coffer.web.render import page, refused, secure
from coffer.web.session import OperatorDep

router = APIRouter()
Filter = Annotated[str | None, Query(max_length=paging.FILTER_LENGTH_MAX)]
TimeFilter = Annotated[str | None, Query(max_length=40)]
CSV_COLUMNS = (
    "id", "group_id", "created_at", "type", "status", "asset", "amount",
    "debit_account_id", "debit_owner", "debit_kind", "credit_account_id", "credit_owner",
    "credit_kind", "pending_id", "reversal_of",
)  # fmt: skip


def _filters(
    user_id: str | None, type_: str | None, status: str | None, asset: str | None,
    from_: str | None, to: str | None,
) -> tuple[transactions.TransactionFilters, dict[str, str]]:  # fmt: skip
    """The search's filters, checked, and the form's values to show them again."""
    user = paging.text(user_id, name="user_id", length_max=64)
    if user is not None and not is_user_id(user):
        raise ValidationFailed("user_id is 1 to 64 of A-Z a-z 0-9 _ . : -", field="user_id")
    kind = paging.text(type_, name="type", length_max=32)
    phase = paging.text(status, name="status", length_max=16)
    if phase is not None and phase not in transactions.STATUSES:
        raise ValidationFailed(f"status is one of {', '.join(transactions.STATUSES)}")
    code = paging.text(asset, name="asset", length_max=16)
    start = paging.parse_time(from_, name="from")
    end = paging.parse_time(to, name="to")
    filters = transactions.TransactionFilters(
        user_id=user,
        types=(kind,) if kind else None,
        statuses=(phase,) if phase else None,
        asset=code.upper() if code else None,
        created_from=start,
        created_to=end,
    )
    form = {
        "user_id": user or "",
        "type": kind or "",
        "status": phase or "",
        "asset": code.upper() if code else "",
        "from": (from_ or "").strip() if start else "",
        "to": (to or "").strip() if end else "",
    }
    return filters, form


def _before_id(cursor: str | None) -> int | None:
    value = paging.decode_cursor(cursor)
    if value is not None and (type(value) is not int or value < 1):
        raise ValidationFailed("this page link is not one the console gave out")
    return value


@router.get("/transactions")
def transactions_page(
    request: Request,
    operator: OperatorDep,
    user_id: Filter = None,
    type: Filter = None,  # the filter's name in the API
    status: Filter = None,
    asset: Filter = None,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: TimeFilter = None,
    cursor: Annotated[str | None, Query(max_length=paging.CURSOR_LENGTH_MAX)] = None,
) -> Response:
    try:
        filters, form = _filters(user_id, type, status, asset, from_, to)
        before_id = _before_id(cursor)
    except CofferError as exc:
        return refused(request, operator, exc)
    with state.database(request).read() as session:
        found = transactions.search(session, filters, limit=paging.PAGE_SIZE, before_id=before_id)
        summary = transactions.summary(session, filters)
    return page(
        request,
        "transactions.html",
        operator,
        search=form,
        lines=found.items,
        summary=summary,
        statuses=transactions.STATUSES,
        next_cursor=(
            None if found.next_before_id is None else paging.encode_cursor(found.next_before_id)
        ),
    )


@router.get("/transactions.csv")
def transactions_csv(
    request: Request,
    operator: OperatorDep,
    user_id: Filter = None,
    type: Filter = None,
    status: Filter = None,
    asset: Filter = None,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: TimeFilter = None,
) -> Response:
    """Every match, streamed a page per short read transaction (constant memory)."""
    try:
        filters, _ = _filters(user_id, type, status, asset, from_, to)
    except CofferError as exc:
        return refused(request, operator, exc)
    found = transactions.iter_transactions(state.database(request).read, filters)

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        for t in found:
            writer.writerow(
                [
                    t.id, t.group_id, t.created_at.isoformat(), t.type, t.status, t.asset,
                    t.amount, t.debit.account_id, f"{t.debit.owner_type}:{t.debit.owner_id}",
                    t.debit.kind, t.credit.account_id,
                    f"{t.credit.owner_type}:{t.credit.owner_id}", t.credit.kind,
                    "" if t.pending_id is None else t.pending_id,
                    "" if t.reversal_of is None else t.reversal_of,
                ]
            )  # fmt: skip
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()

    response = StreamingResponse(rows(), media_type="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = 'attachment; filename="transactions.csv"'
    return secure(response)
