"""Console sessions: a server-signed cookie bound to an admin key's id, and CSRF tokens.

The cookie holds `{"kid": key id, "sid": random session id, "exp": unix seconds}`, signed with
HMAC-SHA256 under a key derived from the JWT secret (so every process sharing the database
accepts it, and rotating COFFER_JWT_SECRET signs everyone out). The raw admin key is never in
it: a stolen cookie dies at `exp` (8 h) or as soon as the key is revoked, which every request
checks. The cookie is `HttpOnly`, `SameSite=Strict`, `Path=/console`, and `Secure` over https.

CSRF: every form carries `csrf_token` = HMAC(secret, "csrf" + sid) in a hidden field (htmx
sends it as the `X-CSRF-Token` header through `hx-headers`); every POST compares it with
`hmac.compare_digest` before anything is read or written, and answers 403 without it. The
sign-in form, which has no session yet, is bound the same way to a short-lived nonce cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from coffer import auth
from coffer.auth import Principal, RateLimiter
from coffer.config import Settings
from coffer.db import Database
from coffer.errors import RateLimited

COOKIE_NAME = "coffer_console"
LOGIN_COOKIE_NAME = "coffer_console_login"
COOKIE_PATH = "/console"
SESSION_TTL_S = 8 * 3600
LOGIN_NONCE_TTL_S = 15 * 60
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
COOKIE_LENGTH_MAX = 1024
SIGN_IN_PATH = "/console/sign-in"
_SECRET_STATE = "console_session_secret"  # noqa: S105 - an attribute name, not a secret
_SECRET_CONTEXT = b"coffer.web console session v1"


@dataclass(frozen=True, slots=True)
class Operator:
    """The signed-in operator: the admin key it signed in with (`key_id` is the audit actor)."""

    key_id: str
    session_id: str
    expires_at_s: int
    csrf_token: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def session_secret(request: Request) -> bytes:
    """The console's signing key, derived once per process from the JWT secret."""
    cached: bytes | None = getattr(request.app.state, _SECRET_STATE, None)
    if cached is not None:
        return cached
    settings: Settings = request.app.state.settings
    database: Database = request.app.state.database
    configured = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    with database.unit_of_work() as session:
        jwt_secret = auth.jwt_secret(session, configured=configured)
    derived = hmac.new(jwt_secret.encode(), _SECRET_CONTEXT, hashlib.sha256).digest()
    setattr(request.app.state, _SECRET_STATE, derived)
    return derived


def _mac(secret: bytes, *parts: str) -> str:
    return _b64(hmac.new(secret, "\x1f".join(parts).encode(), hashlib.sha256).digest())


def sign(secret: bytes, payload: dict[str, Any]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_mac(secret, 'cookie', body)}"


def unsign(secret: bytes, value: str | None) -> dict[str, Any] | None:
    """The payload of a cookie this console signed, or None (absent, tampered, malformed)."""
    if not value or len(value) > COOKIE_LENGTH_MAX or value.count(".") != 1:
        return None
    body, mac = value.split(".")
    if not hmac.compare_digest(mac, _mac(secret, "cookie", body)):
        return None
    try:
        payload = json.loads(_unb64(body))
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def csrf_token_for(secret: bytes, session_id: str) -> str:
    return _mac(secret, "csrf", session_id)


def new_session_cookie(secret: bytes, *, key_id: str, now_s: float) -> tuple[str, Operator]:
    session_id = secrets.token_urlsafe(24)
    expires_at_s = int(now_s) + SESSION_TTL_S
    value = sign(secret, {"kid": key_id, "sid": session_id, "exp": expires_at_s})
    return value, Operator(key_id, session_id, expires_at_s, csrf_token_for(secret, session_id))


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def _sign_in_required(request: Request) -> HTTPException:
    if request.headers.get("HX-Request") == "true":
        # htmx follows a 303 silently and would swap the sign-in page into a tile.
        return HTTPException(401, "sign in again", headers={"HX-Redirect": SIGN_IN_PATH})
    return HTTPException(303, "sign in first", headers={"Location": SIGN_IN_PATH})


def _read_operator(request: Request) -> Operator | None:
    secret = session_secret(request)
    payload = unsign(secret, request.cookies.get(COOKIE_NAME))
    if payload is None:
        return None
    key_id, session_id, expires_at_s = payload.get("kid"), payload.get("sid"), payload.get("exp")
    if not (isinstance(key_id, str) and isinstance(session_id, str)):
        return None
    if type(expires_at_s) is not int or expires_at_s <= time.time():
        return None
    database: Database = request.app.state.database
    with database.read() as session:
        if not auth.is_active_admin_key(session, key_id):
            return None  # revoked (or demoted) since sign-in: the session ends with the key
    limiter: RateLimiter = request.app.state.rate_limiter
    limiter.hit_principal(Principal(kind="admin", id=key_id))
    return Operator(key_id, session_id, expires_at_s, csrf_token_for(secret, session_id))


async def current_operator(request: Request) -> Operator:
    """The signed-in operator; a redirect to the sign-in page without a live session."""
    try:
        operator = await run_in_threadpool(_read_operator, request)
    except RateLimited as exc:
        raise HTTPException(
            429, exc.message, headers={"Retry-After": str(exc.retry_after_s)}
        ) from None
    if operator is None:
        raise _sign_in_required(request)
    return operator


OperatorDep = Annotated[Operator, Depends(current_operator)]


def check_csrf(presented: object, expected: str) -> None:
    """403, before anything happens, unless the form's token is this session's."""
    if not isinstance(presented, str) or not hmac.compare_digest(
        presented.encode(), expected.encode()
    ):
        raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page")


async def verified_form(request: Request, operator: OperatorDep) -> dict[str, str]:
    """A POST's form fields once its CSRF token checks out (field or `X-CSRF-Token`)."""
    form = await request.form()
    presented = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    check_csrf(presented, operator.csrf_token)
    return {name: value for name, value in form.items() if isinstance(value, str)}


FormDep = Annotated[dict[str, str], Depends(verified_form)]


def login_nonce(request: Request) -> tuple[str, str]:
    """(nonce for the cookie, token for the sign-in form's hidden field)."""
    nonce = request.cookies.get(LOGIN_COOKIE_NAME)
    if not nonce or len(nonce) > 64:
        nonce = secrets.token_urlsafe(24)
    return nonce, _mac(session_secret(request), "login", nonce)


def check_login_csrf(request: Request, presented: object) -> None:
    nonce = request.cookies.get(LOGIN_COOKIE_NAME)
    if not nonce or len(nonce) > 64:
        raise HTTPException(403, "the sign-in form expired; reload the page")
    check_csrf(presented, _mac(session_secret(request), "login", nonce))
