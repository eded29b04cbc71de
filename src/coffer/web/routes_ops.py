"""Operators' queues: KYC review, payouts (retry a failed one), escrows (release or refund a
disputed one) and disputes. Each action is the API route's own service call, with the signed-in
key as the actor and the form's reason in the audit log."""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from coffer.errors import CofferError
from coffer.escrow import flows as escrow_flows
from coffer.escrow import records as escrow_records
from coffer.escrow import service as escrows
from coffer.escrow.schemas import ESCROW_ID_PATTERN
from coffer.kit.ids import derived_id
from coffer.kyc import service as kyc
from coffer.ledger import LedgerError
from coffer.payments import disputes
from coffer.payouts import flows as payout_flows
from coffer.payouts import records as payout_records
from coffer.payouts import service as payouts
from coffer.web import paging, state
from coffer.web.render import done, keyset_list, refused
from coffer.web.routes_users import UserIdPath
from coffer.web.session import FormDep, OperatorDep

log = structlog.get_logger(__name__)
router = APIRouter()
CursorQuery = Annotated[str | None, Query(max_length=paging.CURSOR_LENGTH_MAX)]
PayoutIdPath = Annotated[str, Path(pattern=r"^pout_[0-9a-z]{20}$")]
EscrowIdPath = Annotated[str, Path(pattern=ESCROW_ID_PATTERN)]
KycStatus = Literal["submitted", "approved", "rejected"]
PayoutStatus = Literal["pending", "processing", "paid", "failed", "cancelled", "reversed"]
EscrowStatus = Literal[
    "pending", "held", "partially_released", "released", "disputed", "refunding", "refunded"
]
DisputeStatus = Literal["open", "won", "lost", "closed"]


@router.get("/kyc")
def kyc_queue(
    request: Request,
    operator: OperatorDep,
    status: KycStatus | Literal["all"] = "submitted",
    cursor: CursorQuery = None,
) -> Response:
    return keyset_list(
        request,
        operator,
        template="kyc.html",
        name="records",
        lister=kyc.list_kyc,
        cursor=cursor,
        at="submitted_at",
        id_="user_id",
        context={"status": status},
        status=None if status == "all" else status,
    )


def _decide(request: Request, operator: OperatorDep, form: dict[str, str], *, user_id: str,
            decision: kyc.Decision) -> Response:  # fmt: skip
    try:
        work = kyc.plan_decide(
            user_id=user_id,
            decision=decision,
            reason=paging.reason(form),
            actor=operator.key_id,
            now=state.clock(request)(),
        )
        state.writer(request).run(work)
    except (CofferError, LedgerError) as exc:
        return refused(request, operator, exc)
    return done("/console/kyc", "kyc_approved" if decision == "approved" else "kyc_rejected")


@router.post("/kyc/{user_id}/approve")
def approve_kyc(
    request: Request, operator: OperatorDep, form: FormDep, user_id: UserIdPath
) -> Response:
    return _decide(request, operator, form, user_id=user_id, decision="approved")


@router.post("/kyc/{user_id}/reject")
def reject_kyc(
    request: Request, operator: OperatorDep, form: FormDep, user_id: UserIdPath
) -> Response:
    return _decide(request, operator, form, user_id=user_id, decision="rejected")


@router.get("/payouts")
def payout_list(
    request: Request,
    operator: OperatorDep,
    status: PayoutStatus | None = None,
    cursor: CursorQuery = None,
) -> Response:
    return keyset_list(
        request,
        operator,
        template="payouts.html",
        name="payouts",
        lister=payout_records.list_payouts,
        cursor=cursor,
        context={"status": status, "form_key": secrets.token_urlsafe(18)},
        status=status,
    )


@router.post("/payouts/{payout_id}/retry")
def retry_payout(
    request: Request, operator: OperatorDep, form: FormDep, payout_id: PayoutIdPath
) -> Response:
    """As `POST /admin/payouts/{id}/retry`: a new hold through the writer (once per form), then
    the provider asked outside any transaction; if it fails the payout stays held for the
    reconciler."""
    database, clock = state.database(request), state.clock(request)
    try:
        work = payouts.plan_retry(
            database,
            state.settings(request).shop,
            payout_id=payout_id,
            reason=paging.reason(form),
            actor=operator.key_id,
        )
        key = state.form_key(form)
        state.writer(request).run(
            state.once(work, operator=operator, key=key, path=request.url.path)
        )
    except (CofferError, LedgerError) as exc:
        return refused(request, operator, exc)
    try:
        payout_flows.send_payout(
            database, state.providers(request), payout_id=payout_id, clock=clock,
            writer=state.writer(request),
        )  # fmt: skip
    except CofferError as exc:
        log.warning("payout_send_failed", payout_id=payout_id, error=str(exc))
    return done("/console/payouts", "payout_retried")


@router.get("/escrows")
def escrow_list(
    request: Request,
    operator: OperatorDep,
    status: EscrowStatus | None = None,
    cursor: CursorQuery = None,
) -> Response:
    return keyset_list(
        request,
        operator,
        template="escrows.html",
        name="escrows",
        lister=escrow_records.list_escrows,
        cursor=cursor,
        context={"status": status, "form_key": secrets.token_urlsafe(18)},
        status=status,
    )


@router.post("/escrows/{escrow_id}/release")
def release_escrow(
    request: Request, operator: OperatorDep, form: FormDep, escrow_id: EscrowIdPath
) -> Response:
    try:
        work = escrows.plan_release(
            state.database(request),
            escrow_id=escrow_id,
            role=escrow_records.ADMIN,
            amount=paging.amount(form.get("amount"), name="amount"),
            actor=operator.key_id,
            reason=paging.reason(form),
        )
        key = state.form_key(form)
        state.writer(request).run(
            state.once(work, operator=operator, key=key, path=request.url.path)
        )
    except (CofferError, LedgerError) as exc:
        return refused(request, operator, exc)
    return done("/console/escrows", "escrow_released")


@router.post("/escrows/{escrow_id}/refund")
def refund_escrow(
    request: Request, operator: OperatorDep, form: FormDep, escrow_id: EscrowIdPath
) -> Response:
    """As `POST /escrows/{id}/refund` by an admin: the refund's id is derived from the form's
    key, so a second post names the same refund at the provider."""
    try:
        reason = paging.reason(form)
        key = state.form_key(form) or secrets.token_urlsafe(18)
        escrow_flows.refund_escrow(
            state.database(request),
            state.providers(request),
            state.writer(request),
            escrow_id=escrow_id,
            role=escrow_records.ADMIN,
            reason=reason,
            actor=operator.key_id,
            refund_key=derived_id("escref", f"admin:{operator.key_id}", key),
            clock=state.clock(request),
        )
    except (CofferError, LedgerError) as exc:
        return refused(request, operator, exc)
    return done("/console/escrows", "escrow_refunded")


@router.get("/disputes")
def dispute_list(
    request: Request,
    operator: OperatorDep,
    status: DisputeStatus | None = None,
    cursor: CursorQuery = None,
) -> Response:
    return keyset_list(
        request,
        operator,
        template="disputes.html",
        name="disputes",
        lister=disputes.list_disputes,
        cursor=cursor,
        context={"status": status},
        status=status,
    )
