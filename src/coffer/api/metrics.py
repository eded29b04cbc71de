"""Request figures for `GET /metrics`: one pure ASGI middleware, outermost of Coffer's own.

Per HTTP request it counts `coffer_http_requests_total{route,method,status}` and observes
`coffer_http_request_duration_seconds{route,method}` (instruments in `coffer/metrics.py`). The
route is the matched route's template, read from the scope once the app has answered (the
router puts the route there); a request that matched none, or was refused before routing (a
control character, an oversized body), is `metrics.UNMATCHED_ROUTE`. So the label set is bounded
by the routes Coffer has, whatever paths clients send. FastAPI puts the route as its router
declared it there, without the prefix it was included under (`/healthz` is included at the root
and under `/api/v1`): the request's path says which, and the prefix is put back in front.

Cost, on the request stack that bench/README.md measured: no BaseHTTPMiddleware (its extra task
and stream per request), no thread hop; one wrapped `send`, two clock reads, one dict lookup for
the label children (cached: `labels()` takes a lock and builds a key each time) and two
increments. The duration runs from the middleware's call to the last byte handed to the server,
so a live stream (SSE) counts its whole life in the top bucket; its count is still right.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coffer import metrics

SERVER_ERROR = 500
# Children per (route, method, status): routes x methods x statuses, all bounded; the cap is a
# second bound in case that ever stops being true (past it, `labels()` is simply called anew).
CHILDREN_MAX = 4_096


class RequestMetrics:
    """The ASGI middleware (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, prefix: str = "") -> None:
        assert not prefix.endswith("/")
        self.app = app
        self._prefix = prefix
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = SERVER_ERROR  # an exception before the answer started: the server sends a 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, elapsed_s: float) -> None:
        template = self._template(scope)
        method = metrics.method_label(scope.get("method", ""))
        key = (template, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                metrics.http_requests.labels(route=template, method=method, status=str(status)),
                metrics.http_request_duration.labels(route=template, method=method),
            )
            if len(self._children) < CHILDREN_MAX:
                self._children[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(elapsed_s)

    def _template(self, scope: Scope) -> str:
        path_format = getattr(scope.get("route"), "path_format", None)
        if not isinstance(path_format, str):
            return metrics.UNMATCHED_ROUTE
        prefix = self._prefix
        if (
            prefix
            and not path_format.startswith(prefix + "/")
            and scope.get("path", "").startswith(prefix + "/")
        ):
            return prefix + path_format
        return path_format


__all__ = ["RequestMetrics"]
