"""What a request costs Coffer's own process: the app `coffer serve` runs, called in-process.

Over HTTP (`coffer bench --http`) the server shares two cores with PostgreSQL and the load
generator, so its req/s move with the machine's load from one minute to the next. Here there is
no socket, no uvicorn and no load generator: the HTTP bench's own workloads
(`coffer.bench.http_client`) call the app's ASGI callable directly, `--inflight` at a time on one
event loop, and the figure is this process's CPU time (every thread of it, the writer's
included; not the database's) per request. It is steadier than wall time on a shared machine,
so it is the figure to compare a change of the request stack by, run on both trees in turn:

    git archive <before> src | tar -x -C /tmp/before
    for tree in /tmp/before/src src src /tmp/before/src; do
        PYTHONPATH=$tree .venv/bin/python bench/asgi_cost.py \\
            --database-url postgresql://postgres@127.0.0.1:5432/coffer_asgi --workload balance
    done

It prints one JSON line per workload: requests, errors, CPU µs a request, and requests per
second of CPU (the rate one core could serve at, with the database's time not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import tempfile
import time
from typing import Any

from coffer import auth
from coffer.bench import http_client
from coffer.config import Settings
from coffer.kit.clock import utc_now
from coffer.server import build

TOKEN_TTL_S = 3_600


class AsgiConnection:
    """`http_client.Connection`'s interface, answered by calling the ASGI app itself."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def request(
        self, method: str, path: str, *, token: str | None = None, body: Any = None
    ) -> tuple[int, bytes]:
        payload = b"" if body is None else json.dumps(body).encode()
        headers = [(b"host", b"127.0.0.1:8000")]
        if token:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        if body is not None:
            headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(payload)).encode()))
        route, _, query = path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": route,
            "raw_path": route.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50_000),
            "server": ("127.0.0.1", 8_000),
            "state": {},
        }
        delivered = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": payload, "more_body": False}
            await asyncio.Event().wait()  # the client never goes away
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self._app(scope, receive, send)
        return status, b"".join(chunks)

    def close(self) -> None:
        pass


async def _measure(app: Any, plan: http_client.Plan) -> dict[str, Any]:
    connect = lambda: AsgiConnection(app)  # noqa: E731
    setup_errors = await http_client._setup(plan, connect)
    # A short warm-up: statement caches, prepared statements, the pools' connections.
    warm = http_client.Plan(**{**plan.__dict__, "requests_max": 200, "duration_s": 60.0})
    await http_client._drive(warm, connect)
    cpu_before = time.process_time()
    result = await http_client._drive(plan, connect)
    cpu_s = time.process_time() - cpu_before
    requests = max(result["requests"], 1)
    return {
        "workload": plan.workload,
        "inflight": plan.clients,
        "requests": result["requests"],
        "errors": result["errors"] + setup_errors,
        "error_samples": result["error_samples"],
        "cpu_us_per_request": round(cpu_s / requests * 1e6),
        "requests_per_cpu_s": round(requests / cpu_s) if cpu_s else None,
        "wall_requests_per_s": round(result["requests_per_s"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="")
    parser.add_argument("--workload", default="balance", help="comma-separated: balance, gift...")
    parser.add_argument("--requests", type=int, default=3_000, help="per workload")
    parser.add_argument("--inflight", type=int, default=16, help="requests in flight at once")
    parser.add_argument("--users", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        jwt_secret = secrets.token_hex(32)
        os.environ.update(
            {
                "COFFER_DATABASE_URL": args.database_url or f"sqlite:///{scratch}/asgi.db",
                "COFFER_JWT_SECRET": jwt_secret,
                "COFFER_RATE_LIMIT": "1000000/second",
                "COFFER_LOG_LEVEL": "warning",
            }
        )
        coffer = build(Settings(), first_admin_key=False)
        with coffer.database.unit_of_work() as session:
            service_key = auth.create_api_key(session, role="service", label="asgi-cost").key
        try:
            for workload in (w for w in args.workload.split(",") if w):
                tag = secrets.token_hex(4)
                users = [f"asgi-{tag}-{index:04d}" for index in range(args.users)]
                plan = http_client.Plan(
                    host="",
                    port=0,
                    workload=workload,
                    clients=args.inflight,
                    duration_s=3_600.0,
                    requests_max=args.requests,
                    users=users,
                    tokens={
                        user: auth.mint_user_token(
                            jwt_secret, user_id=user, ttl_s=TOKEN_TTL_S, now=utc_now()
                        ).token
                        for user in users
                    },
                    service_key=service_key,
                    host_user=f"asgi-{tag}-host" if workload == "gift-hot" else "",
                )
                print(json.dumps(asyncio.run(_run(coffer, plan))), flush=True)
        finally:
            coffer.close()


async def _run(coffer: Any, plan: http_client.Plan) -> dict[str, Any]:
    try:
        return await _measure(coffer.app, plan)
    finally:
        # Its async read connections belong to this event loop (db/async_reads.py).
        await coffer.database.async_reads.aclose()


if __name__ == "__main__":
    main()
