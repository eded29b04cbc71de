"""Payees and payouts (user token), and the operators' list and retry of payouts."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from coffer.api import errors
from coffer.api.deps import (
    AdminPrincipal,
    DatabaseDep,
    ShopDep,
    UserPrincipal,
    clock_of,
    get_providers,
    get_writer,
)
from coffer.api.idempotent import Idempotent
from coffer.api.pagination import Cursor, Limit, decode_cursor, encode_cursor
from coffer.errors import CofferError
from coffer.payments.service import decode_order_cursor
from coffer.payouts import flows, payees
from coffer.payouts import records as payout_records
from coffer.payouts import service as payouts
from coffer.payouts.schemas import (
    PayeeOut,
    PayoutEnvelope,
    PayoutOut,
    PayoutPageOut,
    PutPayeeIn,
    RequestPayoutIn,
    RetryPayoutIn,
)

log = structlog.get_logger(__name__)
router = APIRouter(tags=["payouts"], responses=errors.responses(*errors.AUTHENTICATED))
MONEY = (*errors.WITH_BODY, 402, 404, 409, 503)
PayoutIdPath = Annotated[str, Path(pattern=r"^pout_[0-9a-z]{20}$")]
PayoutStatus = Literal["pending", "processing", "paid", "failed", "cancelled", "reversed"]


@router.put(
    "/payees/me",
    response_model=PayeeOut,
    responses=errors.responses(*errors.WITH_BODY, *errors.PROVIDER),
    summary="Set where the caller's payouts go (a provider's payee)",
)
def put_payee(
    body: PutPayeeIn, request: Request, principal: UserPrincipal, database: DatabaseDep,
    shop: ShopDep,
) -> PayeeOut:  # fmt: skip
    assert principal.user_id is not None
    payee = payees.put_payee(
        database,
        get_providers(request),
        user_id=principal.user_id,
        provider_name=body.provider,
        destination=body.destination.model_dump(),
        return_url=shop.payouts.onboarding_return_url,
        now=clock_of(request)(),
    )
    return PayeeOut.of(payee)


@router.get("/payees/me", responses=errors.responses(404), summary="The caller's payee")
def get_payee(principal: UserPrincipal, database: DatabaseDep) -> PayeeOut:
    assert principal.user_id is not None
    with database.read() as session:
        return PayeeOut.of(payees.get_payee(session, principal.user_id))


async def _request_payout(
    body: RequestPayoutIn,
    request: Request,
    principal: UserPrincipal,
    database: DatabaseDep,
    shop: ShopDep,
    idem: Idempotent,
) -> Response:
    assert principal.user_id is not None
    user_id = principal.user_id
    response = await idem.commit(
        get_writer(request),
        lambda: payouts.plan_request_payout(
            database,
            shop,
            payout_id=idem.derived_id("pout"),
            user_id=user_id,
            amount=body.amount,
            asset=body.asset,
        ),
        status_code=202,
        shape=PayoutEnvelope.of,
    )
    # Held and recorded: now the provider, outside any transaction (payouts/flows.py). The
    # answer stays the recorded `pending` one, the same for a replay of this request.
    payout_id = json.loads(bytes(response.body))["payout"]["id"]
    await _send(request, database, payout_id)
    return response


async def _send(request: Request, database: DatabaseDep, payout_id: str) -> None:
    """Ask the provider now; whatever goes wrong, the payout stays held and `pending` for the
    reconciler, and the answer already recorded is the one given."""
    clock, providers, writer = clock_of(request), get_providers(request), get_writer(request)
    try:
        await run_in_threadpool(
            lambda: flows.send_payout(
                database, providers, payout_id=payout_id, clock=clock, writer=writer
            )
        )
    except CofferError as exc:
        log.warning("payout_send_failed", payout_id=payout_id, error=str(exc))


router.post(
    "/wallet/payout",
    status_code=202,
    response_model=PayoutEnvelope,
    responses=errors.responses(*MONEY),
    summary="Pay out earnings to the caller's payee",
)(_request_payout)


def _page(found: list[payout_records.Payout], has_more: bool) -> PayoutPageOut:
    next_cursor = None
    if has_more:
        next_cursor = encode_cursor([found[-1].created_at.isoformat(), found[-1].id])
    return PayoutPageOut(
        data=[PayoutOut.of(p) for p in found], has_more=has_more, next_cursor=next_cursor
    )


def _own_payouts(
    principal: UserPrincipal, database: DatabaseDep, limit: Limit = 50, cursor: Cursor = None
) -> PayoutPageOut:
    assert principal.user_id is not None
    before = decode_order_cursor(decode_cursor(cursor))
    with database.read() as session:
        found, has_more = payout_records.list_payouts(
            session, limit=limit, before=before, user_id=principal.user_id
        )
    return _page(found, has_more)


router.get("/wallet/payouts", summary="The caller's payouts, newest first")(_own_payouts)


@router.get(
    "/wallet/payouts/{payout_id}", responses=errors.responses(404), summary="One own payout"
)
def get_payout(
    payout_id: PayoutIdPath, principal: UserPrincipal, database: DatabaseDep
) -> PayoutEnvelope:
    assert principal.user_id is not None
    with database.read() as session:
        return PayoutEnvelope.of(
            payout_records.get_user_payout(session, payout_id=payout_id, user_id=principal.user_id)
        )


@router.get("/admin/payouts", summary="Payouts, newest first")
def admin_payouts(
    _: AdminPrincipal,
    database: DatabaseDep,
    status: PayoutStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> PayoutPageOut:
    before = decode_order_cursor(decode_cursor(cursor))
    with database.read() as session:
        found, has_more = payout_records.list_payouts(
            session, limit=limit, before=before, status=status
        )
    return _page(found, has_more)


@router.post(
    "/admin/payouts/{payout_id}/retry",
    response_model=PayoutEnvelope,
    responses=errors.responses(*MONEY, 403),
    summary="Try a failed payout again: a new hold, a new provider attempt",
)
async def retry_payout(
    payout_id: PayoutIdPath,
    body: RetryPayoutIn,
    request: Request,
    principal: AdminPrincipal,
    database: DatabaseDep,
    shop: ShopDep,
    idem: Idempotent,
) -> Response:
    response = await idem.commit(
        get_writer(request),
        lambda: payouts.plan_retry(
            database, shop, payout_id=payout_id, reason=body.reason, actor=principal.id
        ),
        status_code=200,
        shape=PayoutEnvelope.of,
    )
    await _send(request, database, payout_id)
    return response
