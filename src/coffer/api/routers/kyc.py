"""KYC: the user submits (`POST /kyc`) and reads (`GET /kyc`) their own; admins list, read,
approve and reject. Decisions go through the writer (each emits `kyc.updated`) and into the
audit trail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool

from coffer.api import errors
from coffer.api.deps import AdminPrincipal, DatabaseDep, UserPrincipal, clock_of, get_writer
from coffer.api.pagination import Cursor, Limit, decode_cursor, encode_cursor
from coffer.auth import USER_ID_LENGTH_MAX, USER_ID_PATTERN
from coffer.errors import NotFound
from coffer.kyc import service as kyc
from coffer.kyc.schemas import (
    AdminKycOut,
    AdminKycPageOut,
    DecisionIn,
    KycIn,
    KycOut,
    KycStatus,
    RejectIn,
)
from coffer.payments.service import decode_order_cursor

router = APIRouter(tags=["kyc"], responses=errors.responses(*errors.AUTHENTICATED))
UserIdPath = Annotated[str, Path(pattern=USER_ID_PATTERN, max_length=USER_ID_LENGTH_MAX)]
# A unit the writer could not commit (the database away) answers 503: retry it.
WRITES = (*errors.WITH_BODY, 409, 503)


@router.post(
    "/kyc",
    status_code=201,
    response_model_exclude_none=True,
    responses=errors.responses(*WRITES),
    summary="Submit the caller's KYC documents (again after a rejection)",
)
async def submit_kyc(
    body: KycIn, request: Request, principal: UserPrincipal, database: DatabaseDep
) -> KycOut:
    assert principal.user_id is not None
    user_id = principal.user_id
    work = await run_in_threadpool(
        lambda: kyc.plan_submit(
            database, user_id=user_id, submission=body.submission(), now=clock_of(request)()
        )
    )
    made: kyc.Kyc = await get_writer(request).run_async(work)
    return KycOut.of(made)


@router.get(
    "/kyc",
    response_model_exclude_none=True,
    summary="The caller's KYC status (document number masked; a rejection's reason)",
)
def get_kyc(principal: UserPrincipal, database: DatabaseDep) -> KycOut:
    assert principal.user_id is not None
    with database.read() as session:
        return KycOut.of(kyc.find_kyc(session, principal.user_id))


@router.get("/admin/kyc", summary="KYC records, newest submission first (admin key)")
def admin_list_kyc(
    _: AdminPrincipal,
    database: DatabaseDep,
    status: KycStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AdminKycPageOut:
    before = decode_order_cursor(decode_cursor(cursor))
    if status == "not_submitted":  # nobody has a record in that state
        return AdminKycPageOut(data=[], has_more=False, next_cursor=None)
    with database.read() as session:
        found, has_more = kyc.list_kyc(session, limit=limit, before=before, status=status)
    next_cursor = None
    if has_more:
        next_cursor = encode_cursor([found[-1].submitted_at.isoformat(), found[-1].user_id])
    return AdminKycPageOut(
        data=[AdminKycOut.of(k) for k in found], has_more=has_more, next_cursor=next_cursor
    )


@router.get(
    "/admin/kyc/{user_id}",
    responses=errors.responses(404),
    summary="One user's KYC record, document number whole (admin key)",
)
def admin_get_kyc(user_id: UserIdPath, _: AdminPrincipal, database: DatabaseDep) -> AdminKycOut:
    with database.read() as session:
        found = kyc.find_kyc(session, user_id)
    if found is None:
        raise NotFound(f"no KYC submission for {user_id}", user_id=user_id)
    return AdminKycOut.of(found)


async def _decide(
    request: Request, *, user_id: str, decision: kyc.Decision, reason: str | None, actor: str
) -> AdminKycOut:
    work = kyc.plan_decide(
        user_id=user_id, decision=decision, reason=reason, actor=actor, now=clock_of(request)()
    )
    decided: kyc.Kyc = await get_writer(request).run_async(work)
    return AdminKycOut.of(decided)


@router.post(
    "/admin/kyc/{user_id}/approve",
    responses=errors.responses(*WRITES, 404),
    summary="Approve a submitted KYC (admin key; reason optional)",
)
async def approve_kyc(
    user_id: UserIdPath,
    request: Request,
    principal: AdminPrincipal,
    body: DecisionIn | None = None,
) -> AdminKycOut:
    reason = None if body is None else body.reason
    return await _decide(
        request, user_id=user_id, decision="approved", reason=reason, actor=principal.id
    )


@router.post(
    "/admin/kyc/{user_id}/reject",
    responses=errors.responses(*WRITES, 404),
    summary="Reject a submitted KYC with a reason the user sees (admin key)",
)
async def reject_kyc(
    user_id: UserIdPath, body: RejectIn, request: Request, principal: AdminPrincipal
) -> AdminKycOut:
    return await _decide(
        request, user_id=user_id, decision="rejected", reason=body.reason, actor=principal.id
    )
