"""`POST /auth/token`: a service or admin key mints a user token."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from coffer.api import errors
from coffer.api.deps import ServicePrincipal, get_authenticator
from coffer.auth import (
    TOKEN_TTL_S_DEFAULT,
    TOKEN_TTL_S_MAX,
    TOKEN_TTL_S_MIN,
    USER_ID_PATTERN,
    Authenticator,
)

router = APIRouter(
    tags=["auth"], responses=errors.responses(*errors.AUTHENTICATED, *errors.WITH_BODY)
)


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[str, Field(pattern=USER_ID_PATTERN, min_length=1, max_length=64)]
    ttl_s: Annotated[int, Field(strict=True, ge=TOKEN_TTL_S_MIN, le=TOKEN_TTL_S_MAX)] = (
        TOKEN_TTL_S_DEFAULT
    )


class TokenOut(BaseModel):
    token: str
    expires_at: datetime


@router.post(
    "/auth/token",
    summary="Mint a user token (service or admin key)",
    response_model=TokenOut,
)
def create_token(
    body: TokenIn,
    _: ServicePrincipal,
    authenticator: Annotated[Authenticator, Depends(get_authenticator)],
) -> TokenOut:
    issued = authenticator.mint_user_token(user_id=body.user_id, ttl_s=body.ttl_s)
    return TokenOut(token=issued.token, expires_at=issued.expires_at)
