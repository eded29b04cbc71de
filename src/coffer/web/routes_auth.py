"""Sign in with an admin key, and sign out."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from coffer.auth import Principal
from coffer.errors import RateLimited, Unauthenticated
from coffer.web import state
from coffer.web.render import page, secure
from coffer.web.session import (
    COOKIE_NAME,
    COOKIE_PATH,
    CSRF_FIELD,
    LOGIN_COOKIE_NAME,
    LOGIN_NONCE_TTL_S,
    SESSION_TTL_S,
    FormDep,
    check_login_csrf,
    is_https,
    login_nonce,
    new_session_cookie,
    session_secret,
)

router = APIRouter()
KEY_LENGTH_MAX = 256


def _sign_in_page(
    request: Request, *, error: str | None = None, status_code: int = 200
) -> Response:
    nonce, token = login_nonce(request)
    response = page(
        request, "sign_in.html", None, status_code=status_code, error=error, login_token=token
    )
    response.set_cookie(
        LOGIN_COOKIE_NAME,
        nonce,
        max_age=LOGIN_NONCE_TTL_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return response


@router.get("/sign-in")
def sign_in_form(request: Request) -> Response:
    return _sign_in_page(request)


def _authenticate(request: Request, key: str) -> Principal:
    """The admin principal for `key`, through the API's own authenticator; a failure counts
    against the same failed-authentication budget as a bad bearer token."""
    try:
        principal = state.authenticator(request).authenticate(key)
    except Unauthenticated:
        refusal = state.rate_limiter(request).record_failure(
            address=state.client_address(request), token=key
        )
        if refusal is not None:
            raise refusal from None
        raise
    if not principal.is_admin:
        raise Unauthenticated("the console needs an admin key")
    return principal


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await request.form()
    check_login_csrf(request, form.get(CSRF_FIELD))
    key = form.get("admin_key")
    key = key.strip() if isinstance(key, str) else ""
    if not key or len(key) > KEY_LENGTH_MAX:
        return _sign_in_page(request, error="Enter an admin key.", status_code=401)
    try:
        principal = await run_in_threadpool(_authenticate, request, key)
    except RateLimited as exc:
        response = _sign_in_page(request, error=exc.message, status_code=429)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except Unauthenticated:
        return _sign_in_page(request, error="That is not an active admin key.", status_code=401)
    cookie, _ = new_session_cookie(
        await run_in_threadpool(session_secret, request), key_id=principal.id, now_s=time.time()
    )
    response = secure(RedirectResponse("/console", status_code=303))
    response.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=SESSION_TTL_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    response.delete_cookie(LOGIN_COOKIE_NAME, path=COOKIE_PATH)
    return response


@router.post("/sign-out")
def sign_out(request: Request, _: FormDep) -> Response:
    response = secure(RedirectResponse("/console/sign-in?ok=signed_out", status_code=303))
    response.delete_cookie(
        COOKIE_NAME, path=COOKIE_PATH, httponly=True, samesite="strict", secure=is_https(request)
    )
    return response
