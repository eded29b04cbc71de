"""Rendering console pages: one Jinja2 environment (autoescape on), security headers on every
page, and the refusal page an operator sees when a service says no."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from coffer.errors import CofferError
from coffer.ledger import LedgerError
from coffer.web import paging, state
from coffer.web.session import CSRF_FIELD, CSRF_HEADER, Operator

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

# ECharts sets element styles from script, hence 'unsafe-inline' for styles only; scripts come
# from this origin alone (no inline script, no eval: htmx's eval is switched off in base.html).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _money(amount: int | None, asset: str | None = None) -> str:
    """Minor units as the operator reads them: DIAMOND whole, fiat with two decimals."""
    if amount is None:
        return ""
    if asset is None or asset == "DIAMOND":
        return f"{amount:,}"
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole:,}.{cents:02d} {asset}"


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


environment = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["money"] = _money
environment.filters["when"] = _when
environment.globals["CSRF_FIELD"] = CSRF_FIELD
environment.globals["CSRF_HEADER"] = CSRF_HEADER


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def page(
    request: Request,
    template: str,
    operator: Operator | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """`template` rendered for `operator` (None on the sign-in page)."""
    html = environment.get_template(template).render(
        request=request,
        operator=operator,
        path=request.url.path,
        notice=NOTICES.get(request.query_params.get("ok", ""), ""),
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    secure(response)
    return response


def done(location: str, notice: str) -> Response:
    """After a POST that worked: back to the screen (303), with a fixed notice by name."""
    assert notice in NOTICES
    separator = "&" if "?" in location else "?"
    return secure(RedirectResponse(f"{location}{separator}ok={notice}", status_code=303))


def refused(request: Request, operator: Operator, exc: CofferError | LedgerError) -> HTMLResponse:
    """What an operator sees when the service refused the action: its code and sentence. The
    API maps codes to statuses; the console answers every refusal 400 and changes nothing."""
    back = request.headers.get("referer") or "/console"
    return page(
        request,
        "refused.html",
        operator,
        status_code=400,
        code=exc.code,
        message=exc.message,
        back=back if back.startswith(("/console", str(request.base_url))) else "/console",
    )


# The notices a redirect may show, by name: a query string never puts text on the page.
NOTICES = {
    "refunded": "Refund made.",
    "frozen": "Wallet frozen.",
    "unfrozen": "Wallet unfrozen.",
    "kyc_approved": "KYC approved.",
    "kyc_rejected": "KYC rejected.",
    "payout_retried": "Payout sent again.",
    "escrow_released": "Escrow released to its payee.",
    "escrow_refunded": "Escrow refunded to its payer.",
    "resent": "Delivery queued again.",
    "recovered": "Endpoint enabled; failed deliveries queued again.",
    "verified": "Books verified.",
    "signed_out": "Signed out.",
}


def keyset_list(
    request: Request,
    operator: Operator,
    *,
    template: str,
    name: str,
    lister: Callable[..., tuple[list[Any], bool]],
    cursor: str | None,
    at: str = "created_at",
    id_: str = "id",
    context: dict[str, Any] | None = None,
    **filters: Any,
) -> Response:
    """A console list page: `lister(session, limit, before, **filters)` from the cursor's
    position, newest first, as `name` in `template` with the next page's cursor."""
    try:
        before = paging.time_position(cursor)
    except CofferError as exc:
        return refused(request, operator, exc)
    with state.database(request).read() as session:
        found, has_more = lister(session, limit=paging.PAGE_SIZE, before=before, **filters)
    last = found[-1] if found else None
    next_cursor = last and paging.next_time_cursor(getattr(last, at), getattr(last, id_), has_more)
    values: dict[str, Any] = {name: found, "next_cursor": next_cursor, **(context or {})}
    return page(request, template, operator, **values)
