"""The overview: live tiles (refreshed by htmx every few seconds), the payments chart and the
books' invariants report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from coffer import ledger
from coffer.audit.verify import verify_books
from coffer.web import overview, state
from coffer.web.render import done, page
from coffer.web.session import FormDep, OperatorDep

router = APIRouter()
TILES_REFRESH_S = 5
# The invariants are checked over every transfer; on a large book that takes a while, so the
# overview shows the last report while it is this fresh and an operator may ask for a new one.
VERIFY_FRESH_S = 300
_VERIFIED_STATE = "console_last_verified"


@dataclass(frozen=True)
class Verified:
    report: ledger.VerifyReport
    at: datetime


def _verify(request: Request) -> Verified:
    made = Verified(verify_books(state.database(request)), state.clock(request)())
    setattr(request.app.state, _VERIFIED_STATE, made)
    return made


def _last_verified(request: Request) -> Verified:
    last: Verified | None = getattr(request.app.state, _VERIFIED_STATE, None)
    now = state.clock(request)()
    if last is None or (now - last.at).total_seconds() > VERIFY_FRESH_S:
        return _verify(request)
    return last


@router.get("")
def overview_page(request: Request, operator: OperatorDep) -> Response:
    now = state.clock(request)()
    database = state.database(request)
    return page(
        request,
        "overview.html",
        operator,
        tiles=overview.tiles(database, now=now),
        chart=overview.chart(database, now=now),
        verified=_last_verified(request),
        refresh_s=TILES_REFRESH_S,
    )


@router.get("/tiles")
def tiles_partial(request: Request, operator: OperatorDep) -> Response:
    now = state.clock(request)()
    return page(
        request,
        "_tiles.html",
        operator,
        tiles=overview.tiles(state.database(request), now=now),
        refresh_s=TILES_REFRESH_S,
    )


@router.post("/verify")
def verify_now(request: Request, _: FormDep) -> Response:
    _verify(request)
    return done("/console", "verified")
