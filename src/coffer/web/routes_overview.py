"""The overview: live tiles, the payments chart and the books' invariants report.

The tiles are live from the event stream: `/console/live` is a Server-Sent Events stream that
says "changed" whenever events are committed anywhere (the hub's wake-ups, which cross
processes through LISTEN/NOTIFY or Redis), and the page's script then has htmx re-read the
tiles (at most once a second). A slow timer re-reads them too, should the stream drop."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from coffer import events, ledger
from coffer.audit.verify import verify_books
from coffer.web import overview, state
from coffer.web.render import done, page
from coffer.web.session import FormDep, OperatorDep

router = APIRouter()
TILES_REFRESH_S = 30  # the safety net; the event stream refreshes them as things happen
LIVE_PING_S = 15
LIVE_RETRY_MS = 3_000
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


# The tiles' queries run again only when events were committed since they last ran (one
# indexed max(id) tells) or they are `TILES_MAX_AGE_S` old (a delivery failing writes no
# event), and each page asks at most once per `THROTTLE_MS` (console.js): a busy platform
# costs a few tile reads a minute per operator, whatever its event rate.
TILES_MAX_AGE_S = 10.0
_TILES_STATE = "console_tiles"


def _tiles(request: Request) -> overview.Tiles:
    database = state.database(request)
    with database.read() as session:
        latest = events.latest_id(session)
    cached: tuple[int, float, overview.Tiles] | None = getattr(
        request.app.state, _TILES_STATE, None
    )
    if (
        cached is not None
        and cached[0] == latest
        and time.monotonic() - cached[1] < TILES_MAX_AGE_S
    ):
        return cached[2]
    made = overview.tiles(database, now=state.clock(request)())
    setattr(request.app.state, _TILES_STATE, (latest, time.monotonic(), made))
    return made


@router.get("")
def overview_page(request: Request, operator: OperatorDep) -> Response:
    now = state.clock(request)()
    database = state.database(request)
    return page(
        request,
        "overview.html",
        operator,
        tiles=_tiles(request),
        chart=overview.chart(database, now=now),
        verified=_last_verified(request),
        refresh_s=TILES_REFRESH_S,
    )


@router.get("/tiles")
def tiles_partial(request: Request, operator: OperatorDep) -> Response:
    return page(
        request,
        "_tiles.html",
        operator,
        tiles=_tiles(request),
        refresh_s=TILES_REFRESH_S,
    )


@router.get("/live")
async def live(request: Request, operator: OperatorDep) -> EventSourceResponse:
    """`event: changed` after events were committed (no payload: the tiles re-read)."""
    hub: events.Hub = request.app.state.hub
    subscription = hub.open(f"{events.ANY_USER_PREFIX}{operator.key_id}")

    async def body() -> Any:
        try:
            yield ServerSentEvent(comment="coffer console", retry=LIVE_RETRY_MS)
            # The session was checked when the stream opened; it ends with the session, and
            # the browser's reconnect is checked again (a revoked key gets no new stream).
            while not subscription.stopped and time.time() < operator.expires_at_s:
                if await subscription.wait(LIVE_PING_S):
                    yield ServerSentEvent(event="changed", data="")
        finally:
            hub.release(subscription)

    return EventSourceResponse(
        body(),
        ping=LIVE_PING_S,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(hub.release, subscription),
    )


@router.post("/verify")
def verify_now(request: Request, _: FormDep) -> Response:
    _verify(request)
    return done("/console", "verified")
