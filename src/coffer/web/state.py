"""What the console reads from the app (the same objects the API's routes use), and the one
helper that makes a form's money move happen once however often it is posted."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session

from coffer import idempotency, ledger
from coffer.auth import Authenticator, RateLimiter
from coffer.config import Settings
from coffer.db import Database, Writer
from coffer.kit.clock import Clock, utc_now
from coffer.providers import Providers
from coffer.web.session import Operator

FORM_KEY_FIELD = "form_key"
_ONCE_BODY = b'{"done":true}'


def database(request: Request) -> Database:
    found: Database = request.app.state.database
    return found


def writer(request: Request) -> Writer:
    found: Writer = request.app.state.writer
    return found


def settings(request: Request) -> Settings:
    found: Settings = request.app.state.settings
    return found


def providers(request: Request) -> Providers:
    found: Providers = request.app.state.providers
    return found


def clock(request: Request) -> Clock:
    found: Clock = getattr(request.app.state, "clock", utc_now)
    return found


def authenticator(request: Request) -> Authenticator:
    found: Authenticator = request.app.state.authenticator
    return found


def rate_limiter(request: Request) -> RateLimiter:
    found: RateLimiter = request.app.state.rate_limiter
    return found


def client_address(request: Request) -> str:
    """The peer's address, for the failed sign-in budget (the console is not meant to sit
    behind a proxy that the API trusts; its forwarded headers are not read here)."""
    return request.client.host if request.client else "unknown"


def form_key(form: dict[str, str]) -> str | None:
    """The idempotency key the form was rendered with (one per render), if well formed."""
    raw = form.get(FORM_KEY_FIELD, "")
    return idempotency.parse_key(raw) if raw else None


def once(work: ledger.Work, *, operator: Operator, key: str | None, path: str) -> ledger.Work:
    """`work` committed at most once per (operator, form key): the key is looked up under the
    ledger's write lock and stored in the same commit, as the API's Idempotency-Key is; a second
    post of the same form answers None and moves nothing."""
    if key is None:
        return work
    scope = f"admin:{operator.key_id}"
    inner_before, inner_after = work.before, work.after
    fingerprint = idempotency.fingerprint(method="POST", path=path, query="", body=b"console")

    def before(session: Session) -> Any:
        if idempotency.find(session, scope=scope, key=key) is not None:
            return ledger.Done(None)
        return None if inner_before is None else inner_before(session)

    def after(session: Session, value: Any, made: list[ledger.Transfer]) -> Any:
        result = made if inner_after is None else inner_after(session, value, made)
        idempotency.record_answered(
            session,
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            method="POST",
            path=path,
            status_code=200,
            content_type="application/json",
            body=_ONCE_BODY,
        )
        return result

    return ledger.Work(
        work.group, before=before, after=after, claims=work.claims | {f"idempotency:{scope}:{key}"}
    )
