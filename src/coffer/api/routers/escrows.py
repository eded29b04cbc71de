"""Marketplace escrow: the payer opens and funds it; payer, payee or admin move it."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, Response

from coffer import ledger
from coffer.api import errors
from coffer.api.deps import (
    AdminPrincipal,
    AnyPrincipal,
    DatabaseDep,
    SettingsDep,
    ShopDep,
    UserPrincipal,
    clock_of,
    get_providers,
    get_writer,
)
from coffer.api.idempotent import Idempotent
from coffer.api.pagination import Cursor, Limit, decode_cursor, encode_cursor
from coffer.auth import Principal
from coffer.config import DIAMOND
from coffer.errors import Forbidden, ValidationFailed
from coffer.escrow import flows, records, service
from coffer.escrow.schemas import (
    ESCROW_ID_PATTERN,
    DisputeIn,
    EscrowEnvelope,
    EscrowIn,
    EscrowOut,
    EscrowPageOut,
    RefundEscrowIn,
    ReleaseIn,
)
from coffer.payments.service import decode_order_cursor

router = APIRouter(tags=["escrow"], responses=errors.responses(*errors.AUTHENTICATED))
MONEY = (*errors.WITH_BODY, 404, 409, 503)
EscrowIdPath = Annotated[str, Path(pattern=ESCROW_ID_PATTERN)]
Status = Literal[
    "pending", "held", "partially_released", "released", "disputed", "refunding", "refunded"
]


def _role(database: DatabaseDep, principal: Principal, escrow_id: str) -> str:
    """Who the caller is to this escrow: admin, payer or payee (anyone else: 404)."""
    if principal.is_admin:
        return records.ADMIN
    if not principal.is_user:
        raise Forbidden("escrows are moved by their payer, their payee or an admin")
    with database.read() as session:
        escrow = records.get_escrow(session, escrow_id)
    return records.role_of(escrow, user_id=principal.user_id, admin=False)


def _operator_reason(role: str, reason: str | None) -> None:
    if role == records.ADMIN and reason is None:
        raise ValidationFailed(
            "an operator's move needs a reason",
            fields=[{"field": "body.reason", "message": "required for an admin"}],
        )


@router.post(
    "/escrows",
    status_code=201,
    response_model=EscrowEnvelope,
    responses=errors.responses(*MONEY, *errors.PROVIDER),
    summary="Open an escrow (the payer) and the payment order that funds it",
)
def open_escrow(
    body: EscrowIn,
    request: Request,
    principal: UserPrincipal,
    shop: ShopDep,
    settings: SettingsDep,
    idem: Idempotent,
) -> Response:
    assert principal.user_id is not None
    payer_id = principal.user_id
    now = clock_of(request)
    service.check_terms(
        payer_id=payer_id,
        payee_id=body.payee_id,
        currency=body.currency,
        fiat=frozenset(code for code in shop.assets if code != DIAMOND),
        auto_release_at=body.auto_release_at,
    )
    if body.auto_release_at is not None and body.auto_release_at <= now():
        raise ValidationFailed(
            "auto_release_at must be in the future",
            fields=[{"field": "body.auto_release_at", "message": "in the past"}],
        )
    # The provider is asked before any transaction opens; a replay is answered without it.
    if (replayed := idem.replay()) is not None:
        return replayed
    prepared = flows.prepare_escrow(
        get_providers(request),
        payer_id=payer_id,
        amount=body.amount,
        currency=body.currency,
        provider_name=body.provider,
        default_provider=settings.default_provider,
        request_key=idem.key,
        request_fingerprint=idem.fingerprint,
    )
    fee_bps = shop.escrow.platform_fee_bps
    return idem.run(
        status_code=201,
        work=lambda session: EscrowEnvelope.of(
            *flows.record_escrow(
                session,
                prepared,
                payee_id=body.payee_id,
                fee_bps=fee_bps,
                reference=body.reference,
                auto_release_at=body.auto_release_at,
                now=now(),
            )
        ),
    )


@router.post(
    "/escrows/{escrow_id}/release",
    response_model=EscrowEnvelope,
    responses=errors.responses(*MONEY),
    summary="Release all or part of an escrow to its payee (payer or admin)",
)
async def release_escrow(
    escrow_id: EscrowIdPath,
    body: ReleaseIn,
    request: Request,
    principal: AnyPrincipal,
    database: DatabaseDep,
    idem: Idempotent,
) -> Response:
    def plan() -> ledger.Work:
        role = _role(database, principal, escrow_id)
        _operator_reason(role, body.reason)
        return service.plan_release(
            database,
            escrow_id=escrow_id,
            role=role,
            amount=body.amount,
            actor=principal.id,
            reason=body.reason,
        )

    return await idem.commit(get_writer(request), plan, status_code=200, shape=EscrowEnvelope.of)


@router.post(
    "/escrows/{escrow_id}/refund",
    response_model=EscrowEnvelope,
    responses=errors.responses(*MONEY, *errors.PROVIDER),
    summary="Refund what an escrow still holds through its provider (admin; payer while held)",
)
def refund_escrow(
    escrow_id: EscrowIdPath,
    request: Request,
    principal: AnyPrincipal,
    database: DatabaseDep,
    idem: Idempotent,
    body: RefundEscrowIn | None = None,
) -> Response:
    reason = None if body is None else body.reason
    role = _role(database, principal, escrow_id)
    _operator_reason(role, reason)
    if (replayed := idem.replay()) is not None:
        return replayed
    escrow = flows.refund_escrow(
        database,
        get_providers(request),
        get_writer(request),
        escrow_id=escrow_id,
        role=role,
        reason=reason,
        actor=principal.id,
        refund_key=idem.derived_id("escref"),
        clock=clock_of(request),
    )
    return idem.run(status_code=200, work=lambda _: EscrowEnvelope.of(escrow))


@router.post(
    "/escrows/{escrow_id}/dispute",
    response_model=EscrowEnvelope,
    responses=errors.responses(*MONEY),
    summary="Dispute an escrow (payer or payee): auto-release stops until an admin decides",
)
async def dispute_escrow(
    escrow_id: EscrowIdPath,
    body: DisputeIn,
    request: Request,
    principal: AnyPrincipal,
    database: DatabaseDep,
    idem: Idempotent,
) -> Response:
    clock = clock_of(request)

    def plan() -> ledger.Work:
        role = _role(database, principal, escrow_id)
        return service.plan_dispute(
            database, escrow_id=escrow_id, role=role, reason=body.reason, clock=clock
        )

    return await idem.commit(get_writer(request), plan, status_code=200, shape=EscrowEnvelope.of)


@router.get(
    "/escrows/{escrow_id}",
    responses=errors.responses(404),
    summary="One escrow (its payer, its payee, or an admin)",
)
def get_escrow(
    escrow_id: EscrowIdPath, principal: AnyPrincipal, database: DatabaseDep
) -> EscrowEnvelope:
    _role(database, principal, escrow_id)
    with database.read() as session:
        return EscrowEnvelope.of(records.get_escrow(session, escrow_id))


def _page(found: list[records.Escrow], has_more: bool) -> EscrowPageOut:
    next_cursor = None
    if has_more:
        next_cursor = encode_cursor([found[-1].created_at.isoformat(), found[-1].id])
    return EscrowPageOut(
        data=[EscrowOut.of(e) for e in found], has_more=has_more, next_cursor=next_cursor
    )


@router.get("/escrows", summary="The caller's escrows, as payer or payee, newest first")
def list_escrows(
    principal: UserPrincipal,
    database: DatabaseDep,
    status: Status | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> EscrowPageOut:
    before = decode_order_cursor(decode_cursor(cursor))
    with database.read() as session:
        found, has_more = records.list_escrows(
            session, limit=limit, before=before, party_id=principal.user_id, status=status
        )
    return _page(found, has_more)


@router.get("/admin/escrows", summary="Escrows, newest first")
def admin_escrows(
    _: AdminPrincipal,
    database: DatabaseDep,
    status: Status | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> EscrowPageOut:
    before = decode_order_cursor(decode_cursor(cursor))
    with database.read() as session:
        found, has_more = records.list_escrows(session, limit=limit, before=before, status=status)
    return _page(found, has_more)
