"""FastAPI dependencies: the database, settings, and who is calling (with rate limits).

Every authenticated route depends, directly or through a role check, on `current_principal`,
which authenticates the bearer token and counts the request against the principal's rate limit.
FastAPI caches a dependency within a request, so a route that also uses `Idempotent` (which
depends on `current_principal` too) counts once.

    @router.put("/users/{user_id}")
    def put_user(user_id: str, body: UserIn, principal: ServicePrincipal, db: DatabaseDep): ...

    @router.get("/me")
    def me(principal: UserPrincipal, db: DatabaseDep): ...   # principal.user_id is the caller

    @router.get("/escrows/{escrow_id}")
    def get_escrow(escrow_id: str, principal: AnyPrincipal, db: DatabaseDep):
        ...
        ensure_acts_for(principal, escrow.payer_id)   # 403 unless the payer, service or admin
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from coffer.auth import Authenticator, Principal, RateLimiter, ensure_acts_for
from coffer.auth.keys import is_key_shaped
from coffer.config import Settings, ShopConfig
from coffer.db import Database
from coffer.errors import Forbidden, Unauthenticated
from coffer.kit.clock import Clock, utc_now
from coffer.providers import Providers

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key (`ck_...`, admin or service) or a user token (JWT).",
)
UNKNOWN_ADDRESS = "unknown"


def get_database(request: HTTPConnection) -> Database:
    database: Database = request.app.state.database
    return database


def get_settings(request: HTTPConnection) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_shop(request: HTTPConnection) -> ShopConfig:
    return get_settings(request).shop


def get_providers(request: HTTPConnection) -> Providers:
    providers: Providers = request.app.state.providers
    return providers


def clock_of(connection: HTTPConnection) -> Clock:
    """The app's clock (tests may set `app.state.clock`); UTC now otherwise."""
    clock: Clock = getattr(connection.app.state, "clock", utc_now)
    return clock


def get_authenticator(request: HTTPConnection) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


def get_rate_limiter(request: HTTPConnection) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


def client_address(connection: HTTPConnection) -> str:
    """The peer's address (behind a proxy, run uvicorn with --proxy-headers so this is the
    client's, not the proxy's)."""
    return connection.client.host if connection.client else UNKNOWN_ADDRESS


def authenticate_token(connection: HTTPConnection, token: str | None) -> Principal:
    """Authenticate a raw token for any edge: the Authorization header, or SSE's and
    WebSocket's `?token=` (pass the `Request` or `WebSocket`).

    401 `unauthenticated` for a missing, malformed, expired, tampered or wrongly signed token
    and for an unknown or revoked key; 429 `rate_limited` when the client's address has failed
    too often (checked before the token is looked at) or the principal is over its limit.
    """
    if not token:
        raise Unauthenticated("a bearer token is required (Authorization: Bearer <token>)")
    limiter = get_rate_limiter(connection)
    address = client_address(connection)
    limiter.check_address(address)
    try:
        principal = get_authenticator(connection).authenticate(token)
    except Unauthenticated:
        limiter.record_failure(address)
        raise
    limiter.hit_principal(principal)
    return principal


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    """The caller, from `Authorization: Bearer <token>`; 401 without a valid one.

    A user token with the in-memory rate limiter is checked here, on the event loop: it is
    pure computation (a signature and a counter, tens of microseconds), cheaper than the hop to
    a worker thread and back. An API key (a database lookup) or a Redis-backed limiter (a
    network round trip) may block, so those go to the thread pool.
    """
    if credentials is None and request.headers.get("authorization"):
        # A header that is not "Bearer <token>" (e.g. Basic) is as good as none.
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    token = credentials.credentials if credentials else None
    if token and not is_key_shaped(token) and get_rate_limiter(request).backend == "memory":
        return authenticate_token(request, token)
    return await run_in_threadpool(authenticate_token, request, token)


AnyPrincipal = Annotated[Principal, Depends(current_principal)]


async def require_admin(principal: AnyPrincipal) -> Principal:
    """An admin key; 403 `forbidden` for anyone else."""
    if not principal.is_admin:
        raise Forbidden("this needs an admin key")
    return principal


async def require_service(principal: AnyPrincipal) -> Principal:
    """A service or admin key; 403 `forbidden` for a user token."""
    if not principal.is_service:
        raise Forbidden("this needs a service or admin key")
    return principal


async def require_user(principal: AnyPrincipal) -> Principal:
    """A user token (`principal.user_id` is the caller); 403 `forbidden` for API keys."""
    if not principal.is_user:
        raise Forbidden("this needs a user token")
    return principal


async def require_self_or_service(user_id: str, principal: AnyPrincipal) -> Principal:
    """For routes with a `{user_id}` path parameter: that user's own token, or a service or
    admin key; 403 `forbidden` for another user's token."""
    ensure_acts_for(principal, user_id)
    return principal


# Dependencies that only read app state are `async def`: FastAPI runs a plain `def` dependency
# in the thread pool, a hop to a worker thread and back for a few attribute lookups. The plain
# functions above stay for callers that hold a request outside dependency injection.
async def _database_dep(request: HTTPConnection) -> Database:
    return get_database(request)


async def _settings_dep(request: HTTPConnection) -> Settings:
    return get_settings(request)


async def _shop_dep(request: HTTPConnection) -> ShopConfig:
    return get_shop(request)


AdminPrincipal = Annotated[Principal, Depends(require_admin)]
ServicePrincipal = Annotated[Principal, Depends(require_service)]
UserPrincipal = Annotated[Principal, Depends(require_user)]
SelfOrServicePrincipal = Annotated[Principal, Depends(require_self_or_service)]
DatabaseDep = Annotated[Database, Depends(_database_dep)]
SettingsDep = Annotated[Settings, Depends(_settings_dep)]
ShopDep = Annotated[ShopConfig, Depends(_shop_dep)]

__all__ = [
    "AdminPrincipal",
    "AnyPrincipal",
    "DatabaseDep",
    "SelfOrServicePrincipal",
    "ServicePrincipal",
    "SettingsDep",
    "ShopDep",
    "UserPrincipal",
    "authenticate_token",
    "client_address",
    "clock_of",
    "current_principal",
    "ensure_acts_for",
    "get_authenticator",
    "get_database",
    "get_providers",
    "get_rate_limiter",
    "get_settings",
    "get_shop",
    "require_admin",
    "require_self_or_service",
    "require_service",
    "require_user",
]
