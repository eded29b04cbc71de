"""User tokens: JWTs signed with HS256, `sub` = the user id, `exp` required and checked.

Host apps mint them with the same secret (`COFFER_JWT_SECRET`), so only standard claims are
required: `sub` and `exp`. Coffer's own tokens also carry `iat`. PyJWT's exceptions stop here and
become `Unauthenticated` (STYLE habit 4).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from coffer.auth.principal import is_user_id
from coffer.config import JWT_SECRET_BYTES_MIN
from coffer.errors import Unauthenticated, ValidationFailed

ALGORITHM = "HS256"
TOKEN_TTL_S_MIN = 60
TOKEN_TTL_S_DEFAULT = 3_600
TOKEN_TTL_S_MAX = 30 * 24 * 3_600
TOKEN_LENGTH_MAX = 4_096  # longer bearer values are refused before any parsing
# Host apps' clocks drift: `exp` and `iat` are allowed this much slack.
CLOCK_LEEWAY_S = 30


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


def check_secret(secret: str) -> None:
    # HS256 with a shorter secret can be brute-forced offline from a single token.
    if len(secret.encode("utf-8")) < JWT_SECRET_BYTES_MIN:
        raise ValueError(f"the JWT secret must be at least {JWT_SECRET_BYTES_MIN} bytes long")


def mint_user_token(secret: str, *, user_id: str, ttl_s: int, now: datetime) -> IssuedToken:
    """A token for `user_id` valid for `ttl_s` seconds from `now`."""
    if not is_user_id(user_id):
        raise ValidationFailed(
            "user_id must be 1 to 64 characters of A-Z a-z 0-9 _ . : -",
            fields=[{"field": "user_id", "message": "not a valid user id", "type": "user_id"}],
        )
    if type(ttl_s) is not int or not TOKEN_TTL_S_MIN <= ttl_s <= TOKEN_TTL_S_MAX:
        raise ValidationFailed(
            f"ttl_s must be an integer from {TOKEN_TTL_S_MIN} to {TOKEN_TTL_S_MAX}",
            fields=[{"field": "ttl_s", "message": "out of range", "type": "ttl_s"}],
        )
    assert now.tzinfo is not None
    issued_at = int(now.timestamp())
    expires_at = issued_at + ttl_s
    token = jwt.encode(
        {"sub": user_id, "iat": issued_at, "exp": expires_at}, secret, algorithm=ALGORITHM
    )
    return IssuedToken(token=token, expires_at=datetime.fromtimestamp(expires_at, UTC))


def user_of_token(secret: str, token: str) -> str:
    """The user id a valid token speaks for; `Unauthenticated` for anything else."""
    return _verify(secret, token).user_id


@dataclass(frozen=True, slots=True)
class _Verified:
    user_id: str
    valid_from_s: float  # Unix time, the leeway included (`nbf` and `iat`, if present)
    valid_until_s: float  # Unix time, the leeway included (`exp`)


def _verify(secret: str, token: str) -> _Verified:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"]},
            leeway=timedelta(seconds=CLOCK_LEEWAY_S),
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("the token has expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("the token is not valid") from exc
    user_id = claims.get("sub")
    if not is_user_id(user_id):
        raise Unauthenticated("the token's subject is not a valid user id")
    assert isinstance(user_id, str)
    # PyJWT has checked these are numbers; a token is good from its nbf and iat, until its exp.
    starts = [float(claims[name]) for name in ("nbf", "iat") if name in claims]
    return _Verified(
        user_id=user_id,
        valid_from_s=max(starts, default=float("-inf")) - CLOCK_LEEWAY_S,
        valid_until_s=float(claims["exp"]) + CLOCK_LEEWAY_S,
    )


# A client sends the same token with every request, and checking its signature and claims again
# each time was a tenth of a balance request's CPU. A token that verified is remembered, by its
# exact text (a changed byte is another token), until it expires; user tokens cannot be revoked
# before then anyway (an API key can, and keys are never cached). Bounded: the memory is
# emptied when it holds VERIFIED_TOKENS_MAX; longer tokens are checked every time.
VERIFIED_TOKENS_MAX = 10_000
VERIFIED_TOKEN_LENGTH_MAX = 1_024


class VerifiedTokens:
    """`user_of_token` for one secret, remembering the tokens that verified."""

    def __init__(self, secret: str, *, now_s: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._now_s = now_s
        self._verified: dict[str, _Verified] = {}

    def user_of(self, token: str) -> str:
        now_s = self._now_s()
        known = self._verified.get(token)
        if known is not None:
            if known.valid_from_s <= now_s < known.valid_until_s:
                return known.user_id
            self._verified.pop(token, None)  # expired: checked again below, and refused
        verified = _verify(self._secret, token)
        if len(token) <= VERIFIED_TOKEN_LENGTH_MAX:
            if len(self._verified) >= VERIFIED_TOKENS_MAX:
                self._verified.clear()
            self._verified[token] = verified
        return verified.user_id
