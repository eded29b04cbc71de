"""What `RequestMetrics` (api/metrics.py) adds per request, side by side in one run: a trivial
ASGI app called bare and wrapped, 200,000 times each, three rounds. Run it once plain and once
with PROMETHEUS_MULTIPROC_DIR set to an empty directory (the `--workers N` case)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from coffer.api.metrics import RequestMetrics

CALLS = 200_000
ROUNDS = 3


class _Route:  # what the router leaves in the scope
    path_format = "/wallet/balance"


_ROUTE = _Route()


async def _app(scope: Any, receive: Any, send: Any) -> None:
    scope["route"] = _ROUTE
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


async def _send(message: Any) -> None:
    return None


async def _per_call_us(app: Any) -> float:
    started = time.perf_counter()
    for _ in range(CALLS):
        scope = {"type": "http", "method": "GET", "path": "/api/v1/wallet/balance"}
        await app(scope, _receive, _send)
    return (time.perf_counter() - started) / CALLS * 1e6


async def _main() -> None:
    wrapped = RequestMetrics(_app, prefix="/api/v1")
    for _ in range(ROUNDS):
        bare, measured = await _per_call_us(_app), await _per_call_us(wrapped)
        print(f"bare {bare:.2f} µs, with RequestMetrics {measured:.2f} µs: +{measured - bare:.2f}")


if __name__ == "__main__":
    asyncio.run(_main())
