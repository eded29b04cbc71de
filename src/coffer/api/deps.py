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

import ipaddress
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from coffer.auth import Authenticator, Principal, RateLimiter, ensure_acts_for
from coffer.auth.keys import is_key_shaped
from coffer.config import IpNetwork, Settings, ShopConfig
from coffer.db import Database, Writer
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


def get_writer(request: HTTPConnection) -> Writer:
    """The process's writer: money-moving requests commit their units of work through it."""
    writer: Writer = request.app.state.writer
    return writer


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
    """The client's address: the peer's, or, when the peer is one of COFFER_TRUSTED_PROXIES,
    the one its `Forwarded` / `X-Forwarded-For` header names.

    Anyone can send those headers, so they are read only from a trusted peer, and only up to
    the first hop that is not itself a trusted proxy (the right-most untrusted address: what a
    client writes to the left of it cannot move it). Nothing is parsed when no proxy is trusted.
    """
    peer = connection.client.host if connection.client else UNKNOWN_ADDRESS
    trusted = get_settings(connection).trusted_proxy_networks
    if not trusted or not _is_trusted(_ip(peer), trusted):
        return peer
    hops = _forwarded_hops(connection)
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:
            return peer  # no proxy of ours wrote this hop: the peer is all that is known
        if not _is_trusted(address, trusted):
            return str(address)
    # Every hop is a proxy of ours (a request from inside): the first one is the client.
    first = _ip(hops[0]) if hops else None
    return str(first) if first is not None else peer


FORWARDED_HOPS_MAX = 32
_IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _forwarded_hops(connection: HTTPConnection) -> list[str]:
    """The `for=` addresses of RFC 7239 `Forwarded`, else those of `X-Forwarded-For`, left to
    right as the proxies appended them (the last FORWARDED_HOPS_MAX)."""
    forwarded = connection.headers.getlist("forwarded")
    hops: list[str] = []
    if forwarded:
        for element in ",".join(forwarded).split(","):
            for pair in element.split(";"):
                name, _, value = pair.strip().partition("=")
                if name.lower() == "for":
                    hops.append(_strip_port(value.strip().strip('"')))
    else:
        for line in connection.headers.getlist("x-forwarded-for"):
            hops.extend(_strip_port(hop.strip()) for hop in line.split(","))
    return hops[-FORWARDED_HOPS_MAX:]


def _strip_port(value: str) -> str:
    # "[2001:db8::1]:4711" -> "2001:db8::1"; "192.0.2.1:80" -> "192.0.2.1"; bare v6 is left be.
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.partition(":")[0]
    return value


def _ip(value: str) -> _IpAddress | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _is_trusted(address: _IpAddress | None, trusted: tuple[IpNetwork, ...]) -> bool:
    return address is not None and any(address in network for network in trusted)


def authenticate_token(connection: HTTPConnection, token: str | None) -> Principal:
    """Authenticate a raw token for any edge: the Authorization header, or SSE's and
    WebSocket's `?token=` (pass the `Request` or `WebSocket`).

    401 `unauthenticated` for a missing, malformed, expired, tampered or wrongly signed token
    and for an unknown or revoked key; 429 `rate_limited` instead when such a failure comes from
    an address, or with a credential, past its failure budget, or when the principal is over its
    limit. A token that verifies is never refused for failures (auth/ratelimit.py says why).
    """
    if not token:
        raise Unauthenticated("a bearer token is required (Authorization: Bearer <token>)")
    limiter = get_rate_limiter(connection)
    try:
        principal = get_authenticator(connection).authenticate(token)
    except Unauthenticated:
        refusal = limiter.record_failure(address=client_address(connection), token=token)
        if refusal is not None:
            raise refusal from None
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
    "get_writer",
    "require_admin",
    "require_self_or_service",
    "require_service",
    "require_user",
]
