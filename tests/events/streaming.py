"""Clients for the live streams in tests: an SSE reader over httpx streaming, and helpers to
open a stream and a WebSocket against a real server (uvicorn on loopback)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

# How long a test waits for a stream to say something before it fails (not a measurement:
# the wake-ups deliver in milliseconds, and the safety-net poll is set far above this).
READ_TIMEOUT_S = 10.0


@dataclass
class Message:
    event: str | None = None
    id: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.data)


class SseStream:
    """Reads one `text/event-stream` answer message by message (blank-line separated)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def next_message(self) -> Message:
        message = Message()
        data: list[str] = []
        seen = False
        for line in self._lines:
            if line == "":
                if seen:
                    message.data = "\n".join(data)
                    return message
                continue
            seen = True
            if line.startswith(":"):
                message.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                message.event = value
            elif name == "id":
                message.id = value
        raise EOFError("the stream ended")

    def next_event(self) -> Message:
        """The next message that carries data (heartbeat comments are skipped)."""
        while True:
            message = self.next_message()
            if message.data:
                return message

    def next_comment(self) -> str:
        while True:
            message = self.next_message()
            if message.comments and not message.data:
                return message.comments[0]


@contextlib.contextmanager
def sse(
    base_url: str,
    token: str | None,
    *,
    last_event_id: int | None = None,
    query: dict[str, str] | None = None,
    in_query: bool = False,
) -> Iterator[SseStream]:
    """An open `GET /api/v1/events/stream` (its 200 already checked)."""
    headers = {}
    params = dict(query or {})
    if token is not None:
        if in_query:
            params["token"] = token
        else:
            headers["Authorization"] = f"Bearer {token}"
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    with (
        httpx.Client(base_url=base_url, timeout=READ_TIMEOUT_S) as client,
        client.stream("GET", "/api/v1/events/stream", headers=headers, params=params) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseStream(response)


def ws_url(base_url: str, token: str | None = None, after: int | None = None) -> str:
    params = {}
    if token is not None:
        params["token"] = token
    if after is not None:
        params["after"] = str(after)
    query = str(httpx.QueryParams(params))
    return base_url.replace("http://", "ws://") + "/api/v1/ws" + (f"?{query}" if query else "")


@contextlib.contextmanager
def websocket(
    base_url: str,
    token: str | None,
    *,
    after: int | None = None,
    header: bool = False,
) -> Iterator[ClientConnection]:
    """An open `WS /api/v1/ws` (token in the query, or in the Authorization header)."""
    headers = {"Authorization": f"Bearer {token}"} if header and token else None
    url = ws_url(base_url, None if header else token, after)
    with connect(url, additional_headers=headers, open_timeout=READ_TIMEOUT_S) as ws:
        yield ws


def receive(ws: ClientConnection) -> dict[str, Any]:
    """The next frame that is not a heartbeat."""
    while True:
        frame = json.loads(ws.recv(timeout=READ_TIMEOUT_S))
        if frame.get("type") != "ping":
            return dict(frame)
