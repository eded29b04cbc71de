"""Turning a bearer token (an API key or a user JWT) into a `Principal`.

The same function serves the `Authorization` header, SSE's and WebSocket's `?token=`, and any
other edge that holds a raw token string.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy.exc import SQLAlchemyError

from coffer.auth import keys, service, tokens
from coffer.auth.principal import Principal
from coffer.db import Database
from coffer.errors import Unauthenticated
from coffer.kit.clock import utc_now

log = structlog.get_logger(__name__)


class Authenticator:
    """Checks tokens against the API keys in `database` and the JWT secret."""

    def __init__(
        self,
        database: Database,
        *,
        jwt_secret: str,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        tokens.check_secret(jwt_secret)
        self._database = database
        self._jwt_secret = jwt_secret
        self._clock = clock
        self._user_tokens = tokens.VerifiedTokens(jwt_secret)

    def authenticate(self, token: str | None) -> Principal:
        """The principal `token` speaks for; `Unauthenticated` if it is missing, malformed,
        expired, tampered with, signed with another secret, or an unknown or revoked key."""
        if not token:
            raise Unauthenticated("a bearer token is required")
        if len(token) > tokens.TOKEN_LENGTH_MAX or not token.isascii():
            raise Unauthenticated("the token is not valid")
        if keys.is_key_shaped(token):
            return self._authenticate_key(token)
        user_id = self._user_tokens.user_of(token)
        return Principal(kind="user", id=user_id, user_id=user_id)

    def mint_user_token(
        self, *, user_id: str, ttl_s: int = tokens.TOKEN_TTL_S_DEFAULT
    ) -> tokens.IssuedToken:
        """A user token signed with the secret this authenticator accepts."""
        return tokens.mint_user_token(
            self._jwt_secret, user_id=user_id, ttl_s=ttl_s, now=self._clock()
        )

    def _authenticate_key(self, key: str) -> Principal:
        if not keys.looks_like_key(key):
            raise Unauthenticated("the API key is not valid")
        with self._database.read() as session:
            record = service.find_active_key(session, key)
        if record is None:
            raise Unauthenticated("the API key is not valid")
        now = self._clock()
        if service.key_use_is_stale(record, now=now):
            try:
                with self._database.unit_of_work() as session:
                    service.record_key_use(session, record.id, now=now)
            except SQLAlchemyError as exc:
                # A hint for operators must never fail the request it describes.
                log.warning("api_key_touch_failed", key_id=record.id, error=type(exc).__name__)
        assert record.role in ("admin", "service")
        return Principal(kind="admin" if record.role == "admin" else "service", id=record.id)
