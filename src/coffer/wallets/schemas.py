"""What the API takes and gives for users and agencies (strict where money or rates are)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from coffer.auth.principal import USER_ID_PATTERN
from coffer.wallets.repository import Agency, User
from coffer.wallets.service import (
    AGENCY_ID_PATTERN,
    AGENCY_NAME_LENGTH_MAX,
    DISPLAY_NAME_LENGTH_MAX,
    AccountBalance,
)

UserId = Annotated[str, Field(pattern=USER_ID_PATTERN, min_length=1, max_length=64)]
AgencyId = Annotated[str, Field(pattern=AGENCY_ID_PATTERN, min_length=1, max_length=64)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserIn(_In):
    """`PUT /users/{user_id}`: the whole profile (an absent `agency_id` means none)."""

    display_name: Annotated[str, Field(min_length=1, max_length=DISPLAY_NAME_LENGTH_MAX)]
    agency_id: AgencyId | None = None


class AgencyIn(_In):
    """`PUT /agencies/{agency_id}`."""

    name: Annotated[str, Field(min_length=1, max_length=AGENCY_NAME_LENGTH_MAX)]
    # Basis points (1000 = 10 %); a float, a string or a bool is refused, not rounded.
    commission_bps: Annotated[int, Field(strict=True, ge=0, le=10_000)]


class UserOut(BaseModel):
    """A user. `kyc_status` comes from the KYC module (the caller passes it in); a frozen
    wallet's reason is shown to admins only."""

    id: str
    display_name: str | None
    agency_id: str | None
    kyc_status: Literal["not_submitted", "submitted", "approved", "rejected"]
    frozen: bool
    frozen_reason: str | None = None  # admins only
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: User, *, kyc_status: str, admin: bool = False) -> UserOut:
        return cls(
            id=user.id,
            display_name=user.display_name,
            agency_id=user.agency_id,
            kyc_status=kyc_status,
            frozen=user.frozen,
            frozen_reason=user.frozen_reason if admin else None,
            created_at=user.created_at,
            updated_at=user.updated_at,
        )


class AccountOut(BaseModel):
    """One ledger account, in the asset's minor units: `available = posted - pending_out`."""

    kind: str
    asset: str
    posted: int
    pending_out: int
    pending_in: int
    available: int

    @classmethod
    def of(cls, balance: AccountBalance) -> AccountOut:
        return cls(
            kind=balance.kind,
            asset=balance.asset,
            posted=balance.posted,
            pending_out=balance.pending_out,
            pending_in=balance.pending_in,
            available=balance.available,
        )


class UserWithBalancesOut(UserOut):
    """`GET /me`: the user and every account it owns."""

    accounts: list[AccountOut]

    @classmethod
    def of_balances(
        cls,
        user: User,
        balances: list[AccountBalance],
        *,
        kyc_status: str,
        admin: bool = False,
    ) -> UserWithBalancesOut:
        return cls(
            **UserOut.of(user, kyc_status=kyc_status, admin=admin).model_dump(),
            accounts=[AccountOut.of(b) for b in balances],
        )


class AgencyOut(BaseModel):
    id: str
    name: str
    commission_bps: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, agency: Agency) -> AgencyOut:
        return cls(
            id=agency.id,
            name=agency.name,
            commission_bps=agency.commission_bps,
            created_at=agency.created_at,
            updated_at=agency.updated_at,
        )
