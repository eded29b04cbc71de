"""The caller's events, live: `GET /events/stream` (Server-Sent Events) and `WS /ws`.

Both take the user token from `Authorization: Bearer` or, for browsers (whose EventSource and
WebSocket cannot set headers), `?token=`; both read the outbox through `events.follow`, so they
send the same events in the same order. SSE framing is sse-starlette's: `id:` is the event id,
so a browser's automatic reconnect sends `Last-Event-ID` and resumes without loss; idle
streams get comment heartbeats. A WebSocket resumes with `?after=` and gets `{"type": "ping"}`
when idle. A cursor past retention gets a `reset` (SSE `event: reset`) whose id is the cursor
to go on from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request, WebSocket
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect, WebSocketState

from coffer import events
from coffer.api import errors
from coffer.api.deps import authenticate_token, get_settings
from coffer.api.routers.events import EventOut
from coffer.auth import Principal
from coffer.errors import (
    CofferError,
    Forbidden,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
)

router = APIRouter(tags=["events"])

CURSOR_MAX = 2**63 - 1
TOKEN_LENGTH_MAX = 4_096
# A client that stops reading is dropped after this long, rather than holding its stream.
SEND_TIMEOUT_S = 30.0
RETRY_MS = 3_000  # what a browser waits before it reconnects
SHUTDOWN_GRACE_S = 2.0  # for a stream to end by itself when the server stops
_CURSOR = re.compile(r"^[0-9]{1,19}$")
# A WebSocket refused before accept: the ASGI close code when the server cannot send an HTTP
# answer (RFC 6455 1008: policy violation).
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


def _cursor(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not _CURSOR.match(value) or int(value) > CURSOR_MAX:
        raise ValidationFailed(
            f"{name} must be an event id",
            fields=[{"field": name, "message": "not an event id", "type": "value_error"}],
        )
    return int(value)


async def _stream_principal(connection: HTTPConnection, query_token: str | None) -> Principal:
    """The user behind `Authorization: Bearer` (preferred) or `?token=`; 401 / 403 / 429."""
    header = connection.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        token = token.strip()
    else:
        token = query_token or ""
    principal = await run_in_threadpool(authenticate_token, connection, token)
    if not principal.is_user:
        raise Forbidden("live streams take a user token")
    return principal


def _event_json(event: events.Event) -> str:
    return EventOut.of(event).model_dump_json()


def _reset_json(reset: events.Reset) -> str:
    return json.dumps({"type": "reset", "id": reset.id, "reason": reset.reason})


def _hub(connection: HTTPConnection) -> events.Hub:
    hub: events.Hub = connection.app.state.hub
    return hub


@router.get(
    "/events/stream",
    summary="The caller's events, live, as Server-Sent Events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "An endless event stream: `id:` is the event id, `data:` the event "
            "as in GET /events; `event: reset` when the cursor is past retention.",
        },
        **errors.responses(*errors.AUTHENTICATED),
    },
)
async def stream_events(
    request: Request,
    token: Annotated[
        str | None,
        Query(max_length=TOKEN_LENGTH_MAX, description="the user token, for browsers"),
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=CURSOR_MAX, description="an event id; absent: live from now")
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=19,
            pattern=r"^[0-9]{1,19}$",
            description="sent by a reconnecting EventSource; wins over `after`",
        ),
    ] = None,
) -> EventSourceResponse:
    principal = await _stream_principal(request, token)
    assert principal.user_id is not None
    cursor = _cursor(last_event_id, "Last-Event-ID")
    if cursor is None:
        cursor = after
    settings = get_settings(request)
    hub = _hub(request)
    subscription = hub.open(principal.user_id)  # 429 past the limits, before any byte is sent
    try:
        start = await events.begin(hub, principal.user_id, after=cursor)
    except BaseException:
        hub.release(subscription)
        raise

    shutdown = anyio.Event()  # sse-starlette sets it when the server begins to shut down

    async def stop_on_shutdown() -> None:
        await shutdown.wait()
        subscription.stop()

    async def body() -> Any:
        # Ends the stream cleanly (a complete response) when the server shuts down.
        watcher = asyncio.get_running_loop().create_task(stop_on_shutdown())
        try:
            yield ServerSentEvent(comment="coffer events", retry=RETRY_MS)
            async for item in events.follow(
                hub, subscription, start, idle_s=settings.stream_heartbeat_s
            ):
                if isinstance(item, events.Event):
                    yield ServerSentEvent(data=_event_json(item), id=str(item.id))
                elif isinstance(item, events.Reset):
                    yield ServerSentEvent(data=_reset_json(item), id=str(item.id), event="reset")
                # IDLE: sse-starlette's own heartbeat comments keep the connection open.
        finally:
            watcher.cancel()
            hub.release(subscription)

    return EventSourceResponse(
        body(),
        ping=settings.stream_heartbeat_s,
        send_timeout=SEND_TIMEOUT_S,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_S,
        # If the stream never started, its place is given back all the same.
        background=BackgroundTask(hub.release, subscription),
    )


@router.websocket("/ws")
async def events_socket(websocket: WebSocket) -> None:
    """The same events as `/events/stream`, one JSON text frame each (see the module)."""
    hub = _hub(websocket)
    settings = get_settings(websocket)
    try:
        query = websocket.query_params
        token = query.get("token")
        if token is not None and len(token) > TOKEN_LENGTH_MAX:
            raise ValidationFailed("token is too long")
        cursor = _cursor(query.get("after"), "after")
        principal = await _stream_principal(websocket, token)
        assert principal.user_id is not None
        subscription = hub.open(principal.user_id)
    except CofferError as exc:
        await _refuse(websocket, exc)
        return
    try:
        start = await events.begin(hub, principal.user_id, after=cursor)
        await websocket.accept()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_until_closed, websocket, tasks.cancel_scope)
            async for item in events.follow(
                hub, subscription, start, idle_s=settings.stream_heartbeat_s
            ):
                if isinstance(item, events.Event):
                    text = _event_json(item)
                elif isinstance(item, events.Reset):
                    text = _reset_json(item)
                else:
                    text = '{"type":"ping"}'
                with anyio.fail_after(SEND_TIMEOUT_S):
                    await websocket.send_text(text)
    except (WebSocketDisconnect, TimeoutError):
        pass  # the client left, or stopped reading
    finally:
        hub.release(subscription)
        if websocket.application_state == WebSocketState.CONNECTED:
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(1),
                contextlib.suppress(RuntimeError, WebSocketDisconnect),  # the client closed it
            ):
                await websocket.close()


async def _until_closed(websocket: WebSocket, scope: anyio.CancelScope) -> None:
    """Read (and drop) what the client sends, until it closes: then stop the stream."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    finally:
        scope.cancel()


async def _refuse(websocket: WebSocket, exc: CofferError) -> None:
    """Refuse the handshake with the HTTP answer any other route would give, where the server
    can send one; else close with a policy-violation (or try-again-later) code."""
    status = errors.STATUS_BY_CODE.get(exc.code, 400)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(exc.retry_after_s)}
        await websocket.send_denial_response(
            JSONResponse(
                errors.error_body(exc.code, exc.message, dict(exc.details)),
                status_code=status,
                headers=headers,
            )
        )
        return
    await websocket.close(code=TRY_AGAIN_LATER if status == 429 else POLICY_VIOLATION)


__all__ = ["router"]
