"""The caller's wallet (user token): balance, statement, summary, CSV, top-ups and orders."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from coffer import ledger
from coffer.api import errors
from coffer.api.csv_stream import csv_chunks, csv_response
from coffer.api.deps import (
    DatabaseDep,
    SettingsDep,
    ShopDep,
    UserPrincipal,
    clock_of,
    get_providers,
    get_writer,
)
from coffer.api.filters import AssetFilter, TypeFilter, parse_types
from coffer.api.idempotent import Idempotent
from coffer.api.pagination import (
    Cursor,
    Limit,
    TimeBound,
    decode_cursor,
    encode_cursor,
    page,
    time_range,
)
from coffer.db import Database
from coffer.errors import ValidationFailed
from coffer.kit.clock import rfc3339
from coffer.payments import flows
from coffer.payments import service as payments
from coffer.payments.schemas import OrderOut, TopupIn, TopupOut, VerifyIn, VerifyOut
from coffer.wallets import history
from coffer.wallets.history_schemas import (
    AccountsOut,
    BalanceOut,
    EntryOut,
    EntryPageOut,
    SummaryOut,
)

router = APIRouter(
    prefix="/wallet", tags=["wallet"], responses=errors.responses(*errors.AUTHENTICATED)
)

CSV_COLUMNS = (
    "id",
    "transfer_id",
    "created_at",
    "account_kind",
    "type",
    "status",
    "asset",
    "amount",
    "balance_after",
    "counterparty_id",
    "description",
)


def _statement_cursor(cursor: str | None) -> tuple[int, int] | None:
    value = decode_cursor(cursor)
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)):
        raise ValidationFailed(
            "cursor is not one this API gave out",
            fields=[{"field": "query.cursor", "message": "invalid cursor"}],
        )
    return value[0], value[1]


@router.get("/balance", summary="Balances of the caller's wallet and earnings, with totals")
async def balance(principal: UserPrincipal, database: DatabaseDep) -> BalanceOut:
    assert principal.user_id is not None
    return BalanceOut.of(await history.balance_async(database, principal.user_id))


@router.get("/transactions", summary="The caller's statement, newest first")
def transactions(
    principal: UserPrincipal,
    database: DatabaseDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    type_: TypeFilter = None,
    asset: AssetFilter = None,
    created_from: Annotated[TimeBound, Query(alias="from")] = None,
    created_to: Annotated[TimeBound, Query(alias="to")] = None,
) -> EntryPageOut:
    assert principal.user_id is not None
    start, end = time_range(created_from, created_to)
    with database.read() as session:
        found = history.statement(
            session,
            principal.user_id,
            limit=limit,
            cursor=_statement_cursor(cursor),
            types=parse_types(type_),
            asset=asset,
            created_from=start,
            created_to=end,
        )
    next_cursor = None if found.next_cursor is None else encode_cursor(list(found.next_cursor))
    return EntryPageOut(
        data=[EntryOut.of(line) for line in found.items],
        has_more=next_cursor is not None,
        next_cursor=next_cursor,
    )


@router.get("/summary", summary="Totals and counts per type, in and out")
def summary(
    principal: UserPrincipal,
    database: DatabaseDep,
    created_from: Annotated[TimeBound, Query(alias="from")] = None,
    created_to: Annotated[TimeBound, Query(alias="to")] = None,
) -> SummaryOut:
    assert principal.user_id is not None
    start, end = time_range(created_from, created_to)
    with database.read() as session:
        found = history.summary(session, principal.user_id, created_from=start, created_to=end)
    return SummaryOut.of(principal.user_id, found, start, end)


@router.get(
    "/transactions.csv",
    summary="The caller's statement as CSV (streamed)",
    response_class=StreamingResponse,
)
def transactions_csv(
    principal: UserPrincipal,
    database: DatabaseDep,
    type_: TypeFilter = None,
    asset: AssetFilter = None,
    created_from: Annotated[TimeBound, Query(alias="from")] = None,
    created_to: Annotated[TimeBound, Query(alias="to")] = None,
) -> StreamingResponse:
    assert principal.user_id is not None
    user_id = principal.user_id
    start, end = time_range(created_from, created_to)
    types = parse_types(type_)

    chunks = statement_csv_lines(
        database, user_id, types=types, asset=asset, created_from=start, created_to=end
    )
    return csv_response(chunks, filename="transactions.csv")


def statement_csv_lines(
    database: Database,
    user_id: str,
    *,
    types: list[str] | None = None,
    asset: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    page_size: int = history.PAGE_SIZE_MAX,
) -> Iterator[str]:
    """The user's statement as CSV, a chunk of rows at a time (memory: one page)."""
    lines = history.iter_statement(
        database.read,
        user_id,
        types=types,
        asset=asset,
        created_from=created_from,
        created_to=created_to,
        page_size=page_size,
    )
    rows = (
        (
            line.id,
            line.transfer_id,
            rfc3339(line.created_at),
            line.account_kind,
            line.type,
            line.status,
            line.asset,
            line.amount,
            line.balance_after,
            line.counterparty_id,
            line.description,
        )
        for line in lines
    )
    return csv_chunks(CSV_COLUMNS, rows)


@router.post(
    "/topup",
    status_code=201,
    response_model=TopupOut,
    responses=errors.responses(*errors.WITH_BODY, *errors.PROVIDER, 404, 409),
    summary="Open a payment order for diamonds (a package or a number of diamonds)",
)
async def topup(
    body: TopupIn,
    request: Request,
    principal: UserPrincipal,
    shop: ShopDep,
    settings: SettingsDep,
    idem: Idempotent,
) -> Response:
    assert principal.user_id is not None
    user_id = principal.user_id
    # The provider is called before anything is written (see payments/flows.py), so a replay
    # is answered first, without asking the provider again. Copies that get past this together
    # send the provider the same request (ids derived from the key) and then meet at the
    # writer, which looks the key up under the ledger's write lock: one records the order, the
    # rest replay its answer.
    if idem.key is not None and (replayed := await run_in_threadpool(idem.replay)) is not None:
        return replayed
    providers, now = get_providers(request), clock_of(request)

    def plan() -> ledger.Work:
        prepared = flows.prepare_topup(
            providers,
            shop,
            user_id=user_id,
            package_id=body.package_id,
            diamonds=body.diamonds,
            currency=body.currency,
            provider_name=body.provider,
            default_provider=settings.default_provider,
            request_key=idem.key,
            request_fingerprint=idem.fingerprint,
        )
        # The order row commits in the writer's shared batch, not in a transaction of its own.
        return ledger.Work(None, after=lambda session, _, __: prepared.record(session, now=now()))

    return await idem.commit(
        get_writer(request),
        plan,
        status_code=201,
        shape=lambda order: TopupOut(order=OrderOut.of(order)),
    )


@router.post(
    "/verify",
    response_model=VerifyOut,
    responses=errors.responses(*errors.WITH_BODY, *errors.PROVIDER, 404, 409),
    summary="Verify the client's payment confirmation and credit the order (once)",
)
async def verify(
    body: VerifyIn,
    request: Request,
    principal: UserPrincipal,
    database: DatabaseDep,
    idem: Idempotent,
) -> Response:
    assert principal.user_id is not None
    user_id = principal.user_id
    # The provider vouches for the payment before anything is locked (payments/flows.py).
    providers = get_providers(request)

    def plan() -> ledger.Work:
        checked = flows.check_confirmation(
            database,
            providers,
            user_id=user_id,
            order_id=body.order_id,
            payment_id=body.payment_id,
            signature=body.signature,
        )
        return flows.plan_confirmation(database, checked)

    def answer(session: Session, confirmed: flows.Confirmed) -> VerifyOut:
        return VerifyOut(
            order=OrderOut.of(confirmed.order),
            credited=confirmed.credited,
            balance=AccountsOut.of(user_id, history.user_accounts(session, user_id)),
        )

    return await idem.commit(
        get_writer(request),
        lambda: plan().then(answer),
        status_code=200,
        shape=lambda verified: verified,
    )


@router.get("/payment-orders", summary="The caller's payment orders, newest first")
def payment_orders(
    principal: UserPrincipal,
    database: DatabaseDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, object]:
    assert principal.user_id is not None
    before = payments.decode_order_cursor(decode_cursor(cursor))
    with database.read() as session:
        orders, has_more = payments.list_orders(
            session, limit=limit, before=before, user_id=principal.user_id
        )
    next_cursor = encode_cursor(payments.order_cursor(orders[-1])) if has_more else None
    return page([OrderOut.of(o) for o in orders], next_cursor=next_cursor)
