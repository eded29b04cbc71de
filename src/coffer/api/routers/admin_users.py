"""Admin: freeze and unfreeze a user's wallet (it still receives; it may not spend)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from coffer import kyc, wallets
from coffer.api import errors
from coffer.api.deps import AdminPrincipal, DatabaseDep, clock_of
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
