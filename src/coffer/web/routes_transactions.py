"""Transactions: search with filters, keyset pages, and a streamed CSV export.

Until the platform-wide transaction search lands (coffer.audit.transactions), this reads one
user's statement (coffer.wallets.history), the same rows as `GET /wallet/transactions`: a user
id is needed, and the status filter applies to the page shown."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from coffer.auth import is_user_id
from coffer.errors import CofferError, ValidationFailed
from coffer.wallets import history
from coffer.web import paging, state
from coffer.web.render import page, refused, secure
from coffer.web.session import OperatorDep

router = APIRouter()
Filter = Annotated[str | None, Query(max_length=paging.FILTER_LENGTH_MAX)]
CSV_COLUMNS = (
    "id", "transfer_id", "created_at", "type", "status", "asset", "amount", "balance_after",
    "account_kind", "counterparty_id", "description",
)  # fmt: skip


class Search:
    """The form's filters, checked."""

    def __init__(self, *, user_id: str | None, type_: str | None, status: str | None,
                 asset: str | None, from_: str | None, to: str | None) -> None:  # fmt: skip
        self.user_id = paging.text(user_id, name="user_id", length_max=64)
        if self.user_id is not None and not is_user_id(self.user_id):
            raise ValidationFailed("user_id is 1 to 64 of A-Z a-z 0-9 _ . : -", field="user_id")
        self.type = paging.text(type_, name="type", length_max=32)
        self.status = paging.text(status, name="status", length_max=16)
        self.asset = paging.text(asset, name="asset", length_max=16)
        self.created_from: datetime | None = paging.parse_time(from_, name="from")
        self.created_to: datetime | None = paging.parse_time(to, name="to")

    def form(self) -> dict[str, str]:
        return {
            "user_id": self.user_id or "",
            "type": self.type or "",
            "status": self.status or "",
            "asset": self.asset or "",
            "from": self.created_from.isoformat() if self.created_from else "",
            "to": self.created_to.isoformat() if self.created_to else "",
        }

    def matches(self, line: history.Statement) -> bool:
        return self.status is None or line.status == self.status


def _cursor(cursor: str | None) -> tuple[int, int] | None:
    value = paging.decode_cursor(cursor)
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)):
        raise ValidationFailed("this page link is not one the console gave out")
    return value[0], value[1]


@router.get("/transactions")
def transactions_page(
    request: Request,
    operator: OperatorDep,
    user_id: Filter = None,
    type: Filter = None,  # the filter's name in the API
    status: Filter = None,
    asset: Filter = None,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Annotated[str | None, Query(max_length=paging.CURSOR_LENGTH_MAX)] = None,
) -> Response:
    try:
        search = Search(user_id=user_id, type_=type, status=status, asset=asset, from_=from_, to=to)
        position = _cursor(cursor)
    except CofferError as exc:
        return refused(request, operator, exc)
    lines: list[history.Statement] = []
    next_cursor = None
    summary = None
    if search.user_id is not None:
        with state.database(request).read() as session:
            found = history.statement(
                session,
                search.user_id,
                limit=paging.PAGE_SIZE,
                cursor=position,
                types=[search.type] if search.type else None,
                asset=search.asset,
                created_from=search.created_from,
                created_to=search.created_to,
            )
            summary = history.summary(
                session, search.user_id, created_from=search.created_from,
                created_to=search.created_to,
            )  # fmt: skip
        lines = [line for line in found.items if search.matches(line)]
        if found.next_cursor is not None:
            next_cursor = paging.encode_cursor(list(found.next_cursor))
    return page(
        request,
        "transactions.html",
        operator,
        search=search.form(),
        lines=lines,
        summary=summary,
        next_cursor=next_cursor,
        searched=search.user_id is not None,
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
    to: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """Every matching line, streamed a page per short read transaction."""
    try:
        search = Search(user_id=user_id, type_=type, status=status, asset=asset, from_=from_, to=to)
        if search.user_id is None:
            raise ValidationFailed("the export needs a user id", field="user_id")
    except CofferError as exc:
        return refused(request, operator, exc)
    database = state.database(request)
    lines = history.iter_statement(
        database.read,
        search.user_id,
        types=[search.type] if search.type else None,
        asset=search.asset,
        created_from=search.created_from,
        created_to=search.created_to,
    )

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for line in lines:
            if not search.matches(line):
                continue
            writer.writerow(
                [
                    line.id, line.transfer_id, line.created_at.isoformat(), line.type,
                    line.status, line.asset, line.amount, line.balance_after, line.account_kind,
                    line.counterparty_id, _cell(line.description),
                ]
            )  # fmt: skip
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    response = StreamingResponse(rows(), media_type="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = 'attachment; filename="transactions.csv"'
    return secure(response)


def _cell(text: str) -> str:
    """A spreadsheet must not run a description as a formula (CSV injection)."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
