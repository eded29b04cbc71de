"""Metered calls (service key), the call rate, and the admin's list of calls."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from coffer import ledger
from coffer.api import errors
from coffer.api.deps import (
    AdminPrincipal,
    AnyPrincipal,
    DatabaseDep,
    ServicePrincipal,
    ShopDep,
    UserPrincipal,
    clock_of,
    get_writer,
)
from coffer.api.idempotent import Idempotent
from coffer.api.pagination import Cursor, Limit, decode_cursor, encode_cursor
from coffer.calls import rates as call_rates
from coffer.calls import service as calls
from coffer.calls.schemas import (
    CallEnvelope,
    CallOut,
    CallPageOut,
    CallRateIn,
    CallRateOut,
    EndCallIn,
    StartCallIn,
)
from coffer.errors import NotFound
from coffer.payments.service import decode_order_cursor

router = APIRouter(tags=["calls"], responses=errors.responses(*errors.AUTHENTICATED))
# A unit of work the writer could not commit (the database away) answers 503: retry it.
MONEY = (*errors.WITH_BODY, 404, 409, 503)
CallIdPath = Annotated[str, Path(pattern=r"^call_[0-9a-z]{20}$")]
UserIdFilter = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]


@router.post(
    "/calls",
    status_code=201,
    response_model=CallEnvelope,
    responses=errors.responses(*MONEY, 402),
    summary="Start a call",
)
async def start_call(
    body: StartCallIn,
    request: Request,
    _: ServicePrincipal,
    database: DatabaseDep,
    shop: ShopDep,
    idem: Idempotent,
) -> Response:
    return await idem.commit(
        get_writer(request),
        lambda: calls.plan_start_call(
            database,
            shop,
            call_id=idem.derived_id("call"),
            caller_id=body.caller_id,
            host_id=body.host_id,
            asset=body.asset,
            rate_per_minute=body.rate_per_minute,
        ),
        status_code=201,
        shape=CallEnvelope.of,
    )


def _call(database: DatabaseDep, call_id: str) -> calls.Call:
    with database.read() as session:
        return calls.get_call(session, call_id)


@router.post(
    "/calls/{call_id}/extend",
    response_model=CallEnvelope,
    responses=errors.responses(*MONEY, 402),
    summary="Hold another stretch",
)
async def extend_call(
    call_id: CallIdPath,
    request: Request,
    _: ServicePrincipal,
    database: DatabaseDep,
    shop: ShopDep,
    idem: Idempotent,
) -> Response:
    def plan() -> ledger.Work:
        return calls.plan_extend_call(database, shop, call=_call(database, call_id))

    return await idem.commit(get_writer(request), plan, status_code=200, shape=CallEnvelope.of)


@router.post(
    "/calls/{call_id}/end",
    response_model=CallEnvelope,
    responses=errors.responses(*MONEY),
    summary="End a call and bill it",
)
async def end_call(
    call_id: CallIdPath,
    body: EndCallIn,
    request: Request,
    _: ServicePrincipal,
    database: DatabaseDep,
    shop: ShopDep,
    idem: Idempotent,
) -> Response:
    def plan() -> ledger.Work:
        return calls.plan_end_call(
            database, shop, call=_call(database, call_id), duration_s=body.duration_s
        )

    return await idem.commit(get_writer(request), plan, status_code=200, shape=CallEnvelope.of)


@router.get(
    "/calls/{call_id}",
    responses=errors.responses(404),
    summary="One call (its parties, or a service or admin key)",
)
def get_call(call_id: CallIdPath, principal: AnyPrincipal, database: DatabaseDep) -> CallEnvelope:
    call = _call(database, call_id)
    if principal.is_user and principal.user_id not in (call.caller_id, call.host_id):
        raise NotFound(f"no call {call_id}", call_id=call_id)  # its existence is not revealed
    return CallEnvelope.of(call)


@router.get("/admin/calls", summary="Calls, newest first")
def admin_calls(
    _: AdminPrincipal,
    database: DatabaseDep,
    status: Literal["active", "ended", "expired"] | None = None,
    caller_id: UserIdFilter = None,
    host_id: UserIdFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> CallPageOut:
    before = decode_order_cursor(decode_cursor(cursor))
    with database.read() as session:
        found, has_more = calls.list_calls(
            session, limit=limit, before=before, status=status, caller_id=caller_id, host_id=host_id
        )
    next_cursor = None
    if has_more:
        next_cursor = encode_cursor([found[-1].started_at.isoformat(), found[-1].id])
    return CallPageOut(
        data=[CallOut.of(c) for c in found], has_more=has_more, next_cursor=next_cursor
    )


@router.put(
    "/admin/settings/call-rate",
    responses=errors.responses(*errors.WITH_BODY, 409),
    summary="Set the global call rate, or a host's own",
)
def put_call_rate(
    body: CallRateIn,
    request: Request,
    principal: AdminPrincipal,
    database: DatabaseDep,
    shop: ShopDep,
) -> CallRateOut:
    with database.unit_of_work() as session:
        rate = call_rates.set_rate(
            session,
            shop,
            host_id=body.host_id,
            asset=body.asset,
            rate_per_minute=body.rate_per_minute,
            actor=principal.id,
            now=clock_of(request)(),
            reason=body.reason,
        )
    return CallRateOut.of(rate)


@router.get("/wallet/call-rate", summary="The per-minute call rate (global, or a host's)")
def call_rate(
    _: UserPrincipal, database: DatabaseDep, shop: ShopDep, host_id: UserIdFilter = None
) -> CallRateOut:
    with database.read() as session:
        return CallRateOut.of(call_rates.current_rate(session, shop, host_id=host_id))
