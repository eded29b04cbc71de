"""Admin: one user: their ledger with a summary, their balances at a past instant, and
freezing their wallet (it still receives; it may not spend)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from coffer import kyc, wallets
from coffer.api import errors
from coffer.api.deps import AdminPrincipal, DatabaseDep, clock_of
from coffer.api.pagination import encode_cursor, parse_time
from coffer.audit import users as user_views
from coffer.audit.schemas import BalancesAtOut, UserLedgerOut
from coffer.auth import USER_ID_LENGTH_MAX, USER_ID_PATTERN
from coffer.wallets.schemas import UserOut
from coffer.wallets.service import FREEZE_REASON_LENGTH_MAX

router = APIRouter(
    prefix="/admin/users", tags=["admin"], responses=errors.responses(*errors.AUTHENTICATED)
)
UserIdPath = Annotated[str, Path(pattern=USER_ID_PATTERN, max_length=USER_ID_LENGTH_MAX)]


class FreezeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: Annotated[str, Field(min_length=1, max_length=FREEZE_REASON_LENGTH_MAX)]


def _set_frozen(
    database: DatabaseDep, request: Request, *, user_id: str, frozen: bool, reason: str, actor: str
) -> UserOut:
    with database.unit_of_work() as session:
        user = wallets.set_frozen(
            session, user_id, frozen=frozen, reason=reason, actor=actor, now=clock_of(request)()
        )
        status = kyc.kyc_status(session, user_id)
    return UserOut.of(user, kyc_status=status, admin=True)


@router.post(
    "/{user_id}/freeze",
    responses=errors.responses(*errors.WITH_BODY, 404, 409),
    summary="Freeze a wallet: it receives, but spends and pays out nothing (403 account_frozen)",
)
def freeze(
    user_id: UserIdPath,
    body: FreezeIn,
    request: Request,
    principal: AdminPrincipal,
    database: DatabaseDep,
) -> UserOut:
    return _set_frozen(
        database, request, user_id=user_id, frozen=True, reason=body.reason, actor=principal.id
    )


@router.post(
    "/{user_id}/unfreeze",
    responses=errors.responses(*errors.WITH_BODY, 404, 409),
    summary="Unfreeze a wallet",
)
def unfreeze(
    user_id: UserIdPath,
    body: FreezeIn,
    request: Request,
    principal: AdminPrincipal,
    database: DatabaseDep,
) -> UserOut:
    return _set_frozen(
        database, request, user_id=user_id, frozen=False, reason=body.reason, actor=principal.id
    )


@router.get(
    "/{user_id}/ledger",
    responses=errors.responses(404),
    summary="A user's ledger: recent transactions, orders, gifts and payouts, and a summary",
)
def user_ledger(user_id: UserIdPath, _: AdminPrincipal, database: DatabaseDep) -> UserLedgerOut:
    with database.read() as session:
        view = user_views.user_ledger(session, user_id)
    before = view.transactions.next_before_id
    return UserLedgerOut.of(view, next_cursor=None if before is None else encode_cursor(before))


@router.get(
    "/{user_id}/balance",
    responses=errors.responses(404),
    summary="The user's accounts as they stood at an instant (from the ledger's balance_after)",
)
def balance_at(
    user_id: UserIdPath,
    _: AdminPrincipal,
    database: DatabaseDep,
    request: Request,
    at: Annotated[
        str | None, Query(max_length=40, description="RFC 3339 or YYYY-MM-DD (UTC); now if absent")
    ] = None,
) -> BalancesAtOut:
    instant = parse_time(at, name="at") or clock_of(request)()
    with database.read() as session:
        found = user_views.balances_at(session, user_id, instant)
    return BalancesAtOut.of(user_id, instant, found)
