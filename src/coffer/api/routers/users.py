"""Users and agencies: `PUT /users/{user_id}`, `GET /users/{user_id}`, `GET /me`,
`PUT /agencies/{agency_id}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from coffer import wallets
from coffer.api import errors
from coffer.api.deps import (
    AdminPrincipal,
    DatabaseDep,
    SelfOrServicePrincipal,
    ServicePrincipal,
    ShopDep,
    UserPrincipal,
)
from coffer.auth import USER_ID_LENGTH_MAX, USER_ID_PATTERN
from coffer.db import Database
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
    user_id: UserIdPath, body: UserIn, _: ServicePrincipal, database: DatabaseDep
) -> UserOut:
    with database.unit_of_work() as session:
        user = wallets.put_user(
            session, user_id, display_name=body.display_name, agency_id=body.agency_id
        )
    return UserOut.of(user)


@router.get(
    "/users/{user_id}",
    summary="A user with balances (the user's own token, or a service or admin key)",
)
def get_user(
    user_id: UserIdPath, _: SelfOrServicePrincipal, database: DatabaseDep
) -> UserWithBalancesOut:
    return _with_balances(database, user_id)


@router.get("/me", summary="The calling user with balances (user token)")
def me(principal: UserPrincipal, database: DatabaseDep) -> UserWithBalancesOut:
    assert principal.user_id is not None
    return _with_balances(database, principal.user_id)


@router.put(
    "/agencies/{agency_id}",
    summary="Create or replace an agency (admin key)",
    responses=errors.responses(*errors.WITH_BODY),
)
def put_agency(
    agency_id: AgencyIdPath,
    body: AgencyIn,
    _: AdminPrincipal,
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
        )
    return AgencyOut.of(agency)


def _with_balances(database: Database, user_id: str) -> UserWithBalancesOut:
    # Users come into being on first reference, but a read should not take SQLite's write
    # lock every time: read first, and write only for a user seen for the first time.
    with database.read() as session:
        user = wallets.find_user(session, user_id)
        balances = wallets.account_balances(session, user_id) if user else []
    if user is None:
        with database.unit_of_work() as session:
            user = wallets.ensure_user(session, user_id)
            balances = wallets.account_balances(session, user_id)
    return UserWithBalancesOut.of_balances(user, balances)
