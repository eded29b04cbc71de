"""The delivery job (`webhooks.deliver`): fan new events out to endpoints, then send what is due.

This is the one place that calls the host app's endpoints, so it is where the network is
bounded: an explicit timeout on every phase of a request, no redirects (a 3xx is a failure: a
redirect could point anywhere, SSRF included), the answer's body never read, a batch of at most
`BATCH_SIZE_MAX` deliveries a run, at most `SENDERS_MAX` endpoints at once. Each delivery is
claimed first (`db/claims.py`: `FOR UPDATE SKIP LOCKED` on PostgreSQL, its `next_attempt_at`
leased `CLAIM_LEASE_S` ahead), so processes running the job side by side never send one twice
at once; no transaction is open while sending.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy import func, select

from coffer import __version__, metrics
from coffer.db import Database, claims
from coffer.events.tables import events as events_table
from coffer.kit.clock import Clock
from coffer.outbound import queue, results, schedule, service, signing, urls
from coffer.outbound.tables import deliveries, endpoints

log = structlog.get_logger(__name__)

BATCH_SIZE_MAX = 20
SENDERS_MAX = 8  # endpoints sent to at once in one run
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 10.0
POOL_TIMEOUT_S = 5.0
TIMEOUT = httpx.Timeout(
    connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S, write=WRITE_TIMEOUT_S, pool=POOL_TIMEOUT_S
)
# Long enough for a whole batch to time out one by one; a process that died mid-run leaves
# its claimed deliveries to the next run after this.
CLAIM_LEASE_S = int(BATCH_SIZE_MAX * (CONNECT_TIMEOUT_S + WRITE_TIMEOUT_S + READ_TIMEOUT_S)) + 60
USER_AGENT = f"Coffer-Webhooks/{__version__}"


def deliver_due(
    database: Database,
    clock: Clock,
    *,
    policy: urls.UrlPolicy,
    batch_size: int = BATCH_SIZE_MAX,
    transport: httpx.BaseTransport | None = None,
    rng: random.Random | None = None,
) -> int:
    """One bounded run: fan out, claim, send, book. Returns how many attempts were made."""
    assert 0 < batch_size <= BATCH_SIZE_MAX
    rng = rng or random.Random()
    now = clock()
    fan_out(database, now=now)
    with database.read() as session:
        if session.execute(queue.due(now=now, limit=1)).first() is None:
            return 0  # the usual case: no write transaction at all
    claimed = claims.claim(
        database,
        queue.due(now=now, limit=batch_size),
        table=deliveries,
        lease=deliveries.c.next_attempt_at,
        until=now + timedelta(seconds=CLAIM_LEASE_S),
    )
    with database.read() as session:
        found = [queue.target(session, delivery_id, now=now) for delivery_id in claimed]
    by_endpoint: dict[str, list[queue.Target]] = {}
    for target in found:
        if target is not None:  # None: resent, recovered or disabled since it was claimed
            by_endpoint.setdefault(target.endpoint_id, []).append(target)
    if not by_endpoint:
        return 0
    # One sender per endpoint (at most SENDERS_MAX at once): a slow endpoint holds up only its
    # own deliveries, and each endpoint's are sent in order, so a 429 can stop the rest.
    with (
        httpx.Client(
            timeout=TIMEOUT,
            follow_redirects=False,
            trust_env=False,
            transport=transport,
            headers={"user-agent": USER_AGENT},
        ) as client,
        ThreadPoolExecutor(
            max_workers=min(SENDERS_MAX, len(by_endpoint)), thread_name_prefix="coffer-webhooks"
        ) as pool,
    ):
        sent = pool.map(
            lambda targets: _send_in_turn(
                database, client, targets, policy=policy, clock=clock, rng=rng
            ),
            list(by_endpoint.values()),
        )
        return sum(sent)


def _send_in_turn(
    database: Database,
    client: httpx.Client,
    targets: list[queue.Target],
    *,
    policy: urls.UrlPolicy,
    clock: Clock,
    rng: random.Random,
) -> int:
    """One endpoint's claimed deliveries, one after another; returns the attempts made. After a
    429 or 5xx the rest wait (its Retry-After, or SLOW_DOWN_S); after a 410, for a recovery."""
    made = 0
    paused_until: datetime | None = None
    for target in targets:
        if paused_until is not None:
            with database.unit_of_work() as session:
                results.postpone(
                    session, delivery_id=target.delivery_id, until=paused_until, now=clock()
                )
            continue
        outcome = send(client, target, policy=policy, clock=clock)
        made += 1
        with database.unit_of_work() as session:
            status = results.record_attempt(
                session,
                delivery_id=target.delivery_id,
                endpoint_id=target.endpoint_id,
                outcome=outcome,
                now=clock(),
                rng=rng,
            )
        if not outcome.succeeded:
            metrics.outbound_delivery_failures.labels(
                reason=metrics.delivery_failure_reason(
                    status_code=outcome.status_code, error=outcome.error
                )
            ).inc()
            log.info(
                "webhook_delivery_failed",
                delivery_id=target.delivery_id,
                endpoint_id=target.endpoint_id,
                status_code=outcome.status_code,
                error=outcome.error,
                now_status=status,
            )
        if outcome.status_code == service.GONE:
            break  # disabled: the rest stay pending until an operator recovers it
        if outcome.slow_down:
            wait_s = outcome.retry_after_s or schedule.SLOW_DOWN_S
            paused_until = clock() + timedelta(seconds=wait_s)
    return made


def fan_out(database: Database, *, now: datetime) -> int:
    """Delivery rows for new events, one short transaction per endpoint that is behind."""
    with database.read() as session:
        head = session.execute(select(func.max(events_table.c.id))).scalar_one()
        if head is None:
            return 0
        behind = list(
            session.execute(
                select(endpoints.c.id)
                .where(endpoints.c.status == "enabled", endpoints.c.last_event_id < head)
                .order_by(endpoints.c.id)
                .limit(service.ENDPOINTS_MAX)
            ).scalars()
        )
    made = 0
    for endpoint_id in behind:
        with database.unit_of_work() as session:
            made += queue.fan_out(session, endpoint_id=endpoint_id, now=now)
    return made


def send(
    client: httpx.Client, target: queue.Target, *, policy: urls.UrlPolicy, clock: Clock
) -> service.Outcome:
    """One signed POST, outside any transaction; never raises for what the network does."""
    try:
        urls.check(target.url, policy)  # again: what the name resolves to may have changed
    except urls.RefusedUrl as exc:
        return service.Outcome(status_code=None, latency_ms=0, error=f"refused: {exc}")
    body = target.payload.encode()
    headers = signing.headers(
        target.secrets,
        message_id=target.message_id,
        timestamp_s=int(clock().timestamp()),
        body=body,
    )
    headers["content-type"] = "application/json"
    started = time.perf_counter()
    try:
        # Streamed and closed unread: only the status and headers matter, whatever the size.
        with client.stream("POST", target.url, content=body, headers=headers) as response:
            latency_ms = _elapsed_ms(started)
            code = response.status_code
            return service.Outcome(
                status_code=code,
                latency_ms=latency_ms,
                error=None if 200 <= code < 300 else f"HTTP {code}",
                retry_after_s=schedule.parse_retry_after(
                    response.headers.get("retry-after"), now=clock()
                ),
            )
    except httpx.TimeoutException as exc:
        error = f"timed out ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return service.Outcome(status_code=None, latency_ms=_elapsed_ms(started), error=error)


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.perf_counter() - started) * 1000))


__all__ = ["BATCH_SIZE_MAX", "CLAIM_LEASE_S", "TIMEOUT", "deliver_due", "fan_out", "send"]
