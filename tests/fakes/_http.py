"""What the provider fakes share: a parsed request, JSON answers, routing, injected faults, and
a real HTTP server on a loopback port in a thread (stdlib `wsgiref`), so the official SDKs talk
to the fakes over HTTP exactly as they talk to the providers."""

from __future__ import annotations

import json
import re
import secrets
import socket
import string
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

BODY_MAX_BYTES = 1_048_576
_ALPHANUMERIC = string.ascii_letters + string.digits
_STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Request Failed",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def random_id(prefix: str, length: int = 14) -> str:
    """`order_AbC123...`: the providers' id shape (a prefix, then random alphanumerics)."""
    return prefix + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def form(self) -> dict[str, Any]:
        """Stripe's form encoding, nested: `metadata[order_id]=x` -> {"metadata": {"order_id": "x"}}."""
        nested: dict[str, Any] = {}
        for key, value in parse_qsl(self.body.decode("utf-8"), keep_blank_values=True):
            parts = re.findall(r"[^\[\]]+", key)
            node = nested
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        return nested


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class HttpError(Exception):
    """Raised by a handler: answered with `status` and the provider's error `body`."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Webhook:
    """A delivery as the provider would send it: the raw body and the signed headers."""

    body: bytes
    headers: dict[str, str]
    event: dict[str, Any]


def route(
    method: str, pattern: str
) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Mark a handler for `method` on paths matching `pattern` (named groups become arguments)."""

    def mark(handler: Callable[..., Response]) -> Callable[..., Response]:
        handler.route = (method, re.compile(f"^{pattern}$"))  # type: ignore[attr-defined]
        return handler

    return mark


class FakeApi:
    """A provider's HTTP API in memory: one lock around all state, a log of requests, faults.

    Subclasses define `authenticate(request)` and handlers marked with `@route`.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests: list[Request] = []
        self._faults: deque[tuple[str, Any]] = deque()
        self._routes = [
            (*member.route, member)
            for name in dir(type(self))
            if (member := getattr(self, name, None)) is not None and hasattr(member, "route")
        ]
        self.base_url = ""  # set by `serve`

    # -- faults, for the adapters' error paths -------------------------------------------------------

    def fail_next(self, status: int = 500, *, count: int = 1, body: Any = None) -> None:
        """Answer the next `count` requests with `status` (and `body`, default the provider's)."""
        with self.lock:
            for _ in range(count):
                self._faults.append(("status", (status, body)))

    def delay_next(self, seconds: float, *, count: int = 1) -> None:
        """Hold the next `count` requests for `seconds` before handling them (for timeouts)."""
        with self.lock:
            for _ in range(count):
                self._faults.append(("delay", seconds))

    def server_error_body(self, status: int) -> Any:  # pragma: no cover - overridden
        return {"error": {"message": "fault injected"}}

    def authenticate(self, request: Request) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- WSGI -----------------------------------------------------------------------------------------

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = _request(environ)
        response = self.handle(request)
        payload = json.dumps(response.body).encode("utf-8")
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        headers += list(response.headers.items())
        status_text = _STATUS_TEXT.get(response.status, "Unknown")
        start_response(f"{response.status} {status_text}", headers)
        return [payload]

    def handle(self, request: Request) -> Response:
        with self.lock:
            self.requests.append(request)
            fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault[0] == "delay":
            time.sleep(fault[1])
        elif fault is not None:
            status, body = fault[1]
            return Response(status, body if body is not None else self.server_error_body(status))
        try:
            self.authenticate(request)
            for method, pattern, handler in self._routes:
                match = pattern.match(request.path)
                if match and method == request.method:
                    with self.lock:
                        response: Response = handler(request, **match.groupdict())
                        return response
            raise HttpError(404, self.not_found_body(request))
        except HttpError as exc:
            return Response(exc.status, exc.body)

    def not_found_body(self, request: Request) -> Any:  # pragma: no cover - overridden
        return {"error": {"message": f"no route {request.method} {request.path}"}}


def _request(environ: dict[str, Any]) -> Request:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    assert length <= BODY_MAX_BYTES, "the fakes take small requests only"
    body = environ["wsgi.input"].read(length) if length else b""
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    return Request(
        method=environ["REQUEST_METHOD"].upper(),
        path=environ.get("PATH_INFO") or "/",
        query=dict(parse_qsl(environ.get("QUERY_STRING", ""))),
        headers=headers,
        body=body,
    )


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a request held by `delay_next` must not keep the test waiting
    block_on_close = False


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(app: FakeApi) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 on a free port for the duration; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    app.base_url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield app.base_url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def refused_url() -> str:
    """A loopback URL nothing listens on: connections to it are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
