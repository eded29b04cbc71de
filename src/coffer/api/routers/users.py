"""Users and agencies: `PUT /users/{user_id}`, `GET /users/{user_id}`, `GET /me`,
`PUT /agencies/{agency_id}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from coffer import kyc, wallets
from coffer.api import errors
from coffer.api.deps import (
    AdminPrincipal,
    DatabaseDep,
    SelfOrServicePrincipal,
    ServicePrincipal,
    ShopDep,
    UserPrincipal,
    clock_of,
)
from coffer.auth import USER_ID_LENGTH_MAX, USER_ID_PATTERN, Principal
from coffer.db import Database
from coffer.subscriptions import service as subscriptions
from coffer.subscriptions.schemas import MeOut
from coffer.wallets.schemas import (
    AgencyIn,
    AgencyOut,
    UserIn,
    UserOut,
    UserWithBalancesOut,
)
from coffer.wallets.service import AGENCY_ID_PATTERN

router = APIRouter(tags=["users"], responses=errors.responses(*errors.AUTHENTICATED))

UserIdPath = Annotated[str, Path(pattern=USER_ID_PATTERN, max_length=USER_ID_LENGTH_MAX)]
AgencyIdPath = Annotated[str, Path(pattern=AGENCY_ID_PATTERN, max_length=USER_ID_LENGTH_MAX)]


@router.put(
    "/users/{user_id}",
    summary="Set a user's profile (service or admin key)",
    responses=errors.responses(*errors.WITH_BODY, 404),
)
def put_user(
    user_id: UserIdPath, body: UserIn, principal: ServicePrincipal, database: DatabaseDep
) -> UserOut:
    with database.unit_of_work() as session:
        user = wallets.put_user(
            session, user_id, display_name=body.display_name, agency_id=body.agency_id
        )
        status = kyc.kyc_status(session, user_id)
    return UserOut.of(user, kyc_status=status, admin=principal.is_admin)


@router.get(
    "/users/{user_id}",
    summary="A user with balances (the user's own token, or a service or admin key)",
)
def get_user(
    user_id: UserIdPath, principal: SelfOrServicePrincipal, database: DatabaseDep
) -> UserWithBalancesOut:
    return _with_balances(database, user_id, principal)


@router.get("/me", summary="The calling user with balances and premium access (user token)")
def me(request: Request, principal: UserPrincipal, database: DatabaseDep) -> MeOut:
    assert principal.user_id is not None
    user = _with_balances(database, principal.user_id, principal)
    with database.read() as session:
        premium = subscriptions.is_premium(session, principal.user_id, now=clock_of(request)())
    return MeOut(**user.model_dump(), is_premium=premium)


@router.put(
    "/agencies/{agency_id}",
    summary="Create or replace an agency (admin key)",
    responses=errors.responses(*errors.WITH_BODY),
)
def put_agency(
    agency_id: AgencyIdPath,
    body: AgencyIn,
    principal: AdminPrincipal,
    database: DatabaseDep,
    shop: ShopDep,
) -> AgencyOut:
    with database.unit_of_work() as session:
        agency = wallets.put_agency(
            session,
            agency_id,
            name=body.name,
            commission_bps=body.commission_bps,
            platform_fee_bps=shop.split.platform_fee_bps,
            actor=principal.id,
        )
    return AgencyOut.of(agency)


def _with_balances(database: Database, user_id: str, principal: Principal) -> UserWithBalancesOut:
    # Users come into being on first reference, but a read should not take SQLite's write
    # lock every time: read first, and write only for a user seen for the first time.
    with database.read() as session:
        user = wallets.find_user(session, user_id)
        balances = wallets.account_balances(session, user_id) if user else []
        status = kyc.kyc_status(session, user_id)
    if user is None:
        with database.unit_of_work() as session:
            user = wallets.ensure_user(session, user_id)
            balances = wallets.account_balances(session, user_id)
    return UserWithBalancesOut.of_balances(
        user, balances, kyc_status=status, admin=principal.is_admin
    )
