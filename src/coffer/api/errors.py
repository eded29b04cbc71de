"""The only place where error codes become HTTP statuses (API.md, "Errors").

Every answer that is not a success has one shape:
`{"error": {"code": "...", "message": "...", "details": {...}}}`. Nothing else leaves: no stack
trace, no SQL, no secret. Unexpected exceptions are logged with the request id and answered 500.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from coffer.errors import CofferError, RateLimited
from coffer.ledger import LedgerError

log = structlog.get_logger(__name__)

STATUS_BY_CODE: dict[str, int] = {
    "bad_request": 400,
    "invalid_signature": 400,
    "unauthenticated": 401,
    "insufficient_funds": 402,
    "below_minimum_balance": 402,
    "forbidden": 403,
    "kyc_required": 403,
    "account_frozen": 403,
    "payee_required": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "idempotency_conflict": 409,
    "invalid_state": 409,
    "already_processed": 409,
    "payload_too_large": 413,
    "validation_error": 422,
    "rate_limited": 429,
    "internal_error": 500,
    "provider_rejected": 502,
    # A provider that is on but lacks a secret it needs (a webhook or payout secret): our fault.
    # One that is off altogether is `ProviderOff`, a 422 naming it (API.md).
    "provider_disabled": 503,
    "provider_unavailable": 503,
    "unavailable": 503,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "validation_error",
    429: "rate_limited",
}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    message: str
    details: dict[str, Any]


class ErrorOut(BaseModel):
    """Every answer that is not a success."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


_STATUS_MEANING = {
    400: "Bad request: a body that is not JSON, or a bad or stale signature",
    401: "Unauthenticated: a missing, malformed, expired or unknown token",
    402: "Insufficient funds",
    403: "Forbidden: a token of the wrong role, or acting for someone else",
    404: "Not found (someone else's resource is not revealed either)",
    409: "Conflict: an Idempotency-Key reused with another request, or an invalid state",
    413: "The request body is too large",
    422: "Validation error (details.fields names each field), or a provider that is off",
    429: "Rate limited (see Retry-After)",
    500: "Something went wrong on our side",
    502: "The payment provider refused the request",
    503: "The payment provider or the database is unavailable: retry later",
}
# What every operation may answer: bad input anywhere (control characters in the path or query
# included) and an unexpected failure.
ANY = (422, 500, 503)  # 503: the database did not answer (retry)
AUTHENTICATED = (*ANY, 401, 403, 429)
WITH_BODY = (400, 413)
PROVIDER = (502, 503)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for these statuses, each with the error shape:
    `APIRouter(responses=errors.responses(*errors.AUTHENTICATED))`, and per route the rest."""
    return {
        status: {"model": ErrorOut, "description": _STATUS_MEANING[status]}
        for status in sorted(set(statuses))
    }


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, details),
        status_code=STATUS_BY_CODE.get(code, 500),
        headers=headers,
    )


def _public_details(details: dict[str, Any]) -> dict[str, Any]:
    # Details are built by our own code from the request's own data; keep them JSON-plain.
    return {
        k: v for k, v in details.items() if isinstance(v, str | int | float | bool | list | dict)
    }


async def _coffer_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CofferError | LedgerError)
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return error_response(exc.code, exc.message, _public_details(exc.details), headers=headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            return error_response("bad_request", "the request body is not valid JSON")
        location = [str(part) for part in error.get("loc", ())]
        fields.append(
            {
                "field": ".".join(location),
                "message": error.get("msg", ""),
                "type": error.get("type"),
            }
        )
    return error_response("validation_error", "the request is not valid", {"fields": fields})


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(
        exc.status_code, "bad_request" if exc.status_code < 500 else "internal_error"
    )
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404:
        message = "no such resource"
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The database went away under a read or a write of the request's own (a restart, a
    # failover, a connection cut): nothing was committed for it, so it is safe to retry.
    # SQLAlchemy invalidates the pool's connections; the next request gets fresh ones.
    log.warning(
        "database_unavailable",
        path=request.url.path,
        method=request.method,
        error=str(getattr(exc, "orig", exc))[:300],
    )
    return error_response(
        "unavailable", "the database did not answer; retry", headers={"Retry-After": "1"}
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path, method=request.method, exc_info=exc)
    return error_response("internal_error", "something went wrong on our side")


def install(app: FastAPI) -> None:
    """The handlers that give every failure the one shape."""
    app.add_exception_handler(CofferError, _coffer_error)
    app.add_exception_handler(LedgerError, _coffer_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)
