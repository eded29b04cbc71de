"""The load generator of `coffer bench --http`, run as its own process (its own GIL).

`python -m coffer.bench.http_client` reads one JSON line of settings on stdin (the service key
and the JWT secret travel there, never on the command line), prepares the users (untimed),
prints `{"ready": ...}`, waits for a line `go`, drives the server for the window, and prints
one JSON line with the figures.

Each client is one keep-alive HTTP/1.1 connection on asyncio (uvloop when installed) with
httptools parsing the answers: an httpx client costs several times more CPU per request, and
on a machine of two cores the load generator's CPU is taken from the server it measures.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httptools

API = "/api/v1"
FLOOR_PATH = "/floor"
TOPUP_DIAMONDS = 100  # the smallest top-up the default configuration accepts (10 INR)
FUNDING_DIAMONDS = 1_000_000  # each gift-workload user's funds: far more than a run spends
GIFT_DIAMONDS = 1
SETUP_CONCURRENCY = 16
ERROR_SAMPLES_MAX = 5
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0
READ_CHUNK = 65_536
WORKLOADS = ("balance", "topup", "gift", "gift-hot", "packages", "floor")
FUNDED = ("gift", "gift-hot")


class HttpError(Exception):
    """An answer with an unexpected status (or none at all)."""


class _Answer:
    """httptools' callbacks: the status and the body of one response."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.done = False
        self.keep_alive = True
        self.parser: httptools.HttpResponseParser | None = None

    def on_headers_complete(self) -> None:
        # Asked here: once the message is complete, httptools answers False whatever it said.
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


class Connection:
    """One keep-alive connection; reconnects after an error."""

    opened = 0  # connections made by this process (a keep-alive run makes one per client)

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._host_header = f"Host: {host}:{port}\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, *, token: str | None = None, body: Any = None
    ) -> tuple[int, bytes]:
        if self._writer is None:
            connect = asyncio.open_connection(self._host, self._port)
            self._reader, self._writer = await asyncio.wait_for(connect, CONNECT_TIMEOUT_S)
            Connection.opened += 1
        assert self._reader is not None and self._writer is not None
        payload = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host_header]
        if token:
            head.append(f"Authorization: Bearer {token}\r\n".encode())
        if body is not None:
            head.append(b"Content-Type: application/json\r\n")
        head.append(f"Content-Length: {len(payload)}\r\n\r\n".encode())
        try:
            self._writer.write(b"".join(head) + payload)
            answer = _Answer()
            parser = answer.parser = httptools.HttpResponseParser(answer)
            while not answer.done:
                chunk = await asyncio.wait_for(self._reader.read(READ_CHUNK), REQUEST_TIMEOUT_S)
                if not chunk:
                    raise HttpError("the server closed the connection")
                parser.feed_data(chunk)
            if not answer.keep_alive:
                self.close()
            return parser.get_status_code(), bytes(answer.body)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def _expect(status: int, body: bytes, wanted: int, what: str) -> Any:
    if status != wanted:
        raise HttpError(f"{what}: {status} {body[:200].decode(errors='replace')}")
    return json.loads(body) if body else None


@dataclass
class Plan:
    """What the client process was asked to do."""

    host: str
    port: int
    workload: str
    clients: int
    duration_s: float
    requests_max: int
    users: list[str] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    service_key: str = ""
    host_user: str = ""
    seed: int = 1


async def _topup_pair(conn: Connection, token: str, diamonds: int) -> None:
    status, body = await conn.request(
        "POST", f"{API}/wallet/topup", token=token, body={"diamonds": diamonds}
    )
    order = _expect(status, body, 201, "topup")["order"]
    checkout = order["checkout"]
    status, body = await conn.request(
        "POST",
        f"{API}/wallet/verify",
        token=token,
        body={
            "order_id": order["id"],
            "payment_id": checkout["payment_id"],
            "signature": checkout["signature"],
        },
    )
    _expect(status, body, 200, "verify")


Connect = Callable[[], "Connection"]


async def _setup(plan: Plan, connect: Connect | None = None) -> int:
    """Create every user (and the host) and fund them when the workload spends; untimed.

    `connect` makes a client's connection (default: TCP to the plan's host and port; bench/
    asgi_cost.py passes one that calls the app in-process)."""
    errors = 0
    everyone = [*plan.users, *([plan.host_user] if plan.host_user else [])]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for user in everyone:
        queue.put_nowait(user)

    async def worker() -> None:
        nonlocal errors
        conn = connect() if connect else Connection(plan.host, plan.port)
        while not queue.empty():
            user = queue.get_nowait()
            try:
                status, body = await conn.request(
                    "PUT",
                    f"{API}/users/{user}",
                    token=plan.service_key,
                    body={"display_name": user},
                )
                _expect(status, body, 200, "put user")
                if plan.workload in FUNDED and user != plan.host_user:
                    await _topup_pair(conn, plan.tokens[user], FUNDING_DIAMONDS)
            except (HttpError, OSError, TimeoutError) as exc:
                errors += 1
                print(json.dumps({"setup_error": str(exc)[:300]}), file=sys.stderr)
        conn.close()

    await asyncio.gather(*(worker() for _ in range(SETUP_CONCURRENCY)))
    return errors


def _operation(
    plan: Plan, rng: random.Random
) -> tuple[int, Callable[[Connection], Awaitable[None]]]:
    """One operation of the workload: (requests it makes, the coroutine function)."""
    workload = plan.workload
    if workload == "floor":
        return 1, lambda conn: _get(conn, FLOOR_PATH, None)
    if workload == "packages":
        return 1, lambda conn: _get(conn, f"{API}/packages", None)
    user = rng.choice(plan.users)
    token = plan.tokens[user]
    if workload == "balance":
        return 1, lambda conn: _get(conn, f"{API}/wallet/balance", token)
    if workload == "topup":
        return 2, lambda conn: _topup_pair(conn, token, TOPUP_DIAMONDS)
    if workload == "gift-hot":
        receiver = plan.host_user
    else:
        receiver = rng.choice(plan.users)
        while receiver == user:
            receiver = rng.choice(plan.users)
    gift = {"receiver_id": receiver, "diamonds": GIFT_DIAMONDS}
    return 1, lambda conn: _post(conn, f"{API}/wallet/send-gift", token, gift, 201)


async def _get(conn: Connection, path: str, token: str | None) -> None:
    status, body = await conn.request("GET", path, token=token)
    _expect(status, body, 200, f"GET {path}")


async def _post(conn: Connection, path: str, token: str, body: Any, wanted: int) -> None:
    status, answer = await conn.request("POST", path, token=token, body=body)
    _expect(status, answer, wanted, f"POST {path}")


def _percentile(ordered: list[float], share: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _drive(plan: Plan, connect: Connect | None = None) -> dict[str, Any]:
    latencies: list[float] = []
    opened_before = Connection.opened
    requests = 0
    errors = 0
    samples: list[str] = []
    started = time.perf_counter()
    deadline = started + plan.duration_s

    async def client(index: int) -> None:
        nonlocal requests, errors
        rng = random.Random(plan.seed * 1_000_003 + index)
        conn = connect() if connect else Connection(plan.host, plan.port)
        while time.perf_counter() < deadline and len(latencies) + errors < plan.requests_max:
            count, operation = _operation(plan, rng)
            began = time.perf_counter()
            try:
                await operation(conn)
            except (HttpError, OSError, TimeoutError, ValueError) as exc:
                errors += 1
                if len(samples) < ERROR_SAMPLES_MAX:
                    samples.append(str(exc)[:300] or type(exc).__name__)
                continue
            latencies.append(time.perf_counter() - began)
            requests += count
        conn.close()

    await asyncio.gather(*(client(index) for index in range(plan.clients)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "ops": len(latencies),
        "requests": requests,
        "errors": errors,
        "error_samples": samples,
        "connections": Connection.opened - opened_before,
        "elapsed_s": elapsed,
        "ops_per_s": len(latencies) / elapsed,
        "requests_per_s": requests / elapsed,
        "latency_p50_ms": _percentile(ordered, 0.50) * 1000,
        "latency_p99_ms": _percentile(ordered, 0.99) * 1000,
    }


async def _main(plan: Plan) -> None:
    setup_errors = await _setup(plan)
    print(json.dumps({"ready": True, "setup_errors": setup_errors}), flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        return
    result = await _drive(plan)
    result["setup_errors"] = setup_errors
    print(json.dumps(result), flush=True)


def main() -> None:
    plan = Plan(**json.loads(sys.stdin.readline()))
    assert plan.workload in WORKLOADS, plan.workload
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        asyncio.run(_main(plan))
    else:
        uvloop.run(_main(plan))


if __name__ == "__main__":
    main()
