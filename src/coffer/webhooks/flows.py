"""Receiving and retrying webhooks: verify, store, answer, then process in a transaction of
its own (so a processing failure never loses the event: it stays in the inbox for a retry)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import structlog

from coffer import metrics
from coffer.db import Database, Writer, claims
from coffer.kit.clock import Clock
from coffer.providers import Providers
from coffer.webhooks import service
from coffer.webhooks.tables import inbox

log = structlog.get_logger(__name__)
# A claimed retry is not due again for this long (a process that died mid-run leaves it then).
CLAIM_LEASE_S = 120


@dataclass(frozen=True, slots=True)
class Receipt:
    provider: str
    event_id: str
    duplicate: bool  # seen before: answered 200, nothing done again
    outcome: str  # processed | ignored | retry | done


def receive_webhook(
    database: Database,
    providers: Providers,
    *,
    provider_name: str,
    body: bytes,
    headers: Mapping[str, str],
    clock: Clock,
    writer: Writer | None = None,
) -> Receipt:
    """Verify the signature on the raw body, store the event once, and try to apply it."""
    provider = providers.get(provider_name)
    event = provider.parse_webhook(
        body=body, headers=headers
    )  # InvalidSignature: 400, nothing kept
    with database.unit_of_work() as session:
        inbox_id, is_new = service.receive(session, event=event, raw_body=body, now=clock())
    if not is_new:
        return Receipt(event.provider, event.event_id, duplicate=True, outcome="done")
    return Receipt(
        event.provider,
        event.event_id,
        duplicate=False,
        outcome=process(database, inbox_id, clock, writer=writer),
    )


def process(
    database: Database, inbox_id: int, clock: Clock, *, writer: Writer | None = None
) -> str:
    """Apply one inbox entry through the writer (its ledger moves share a batch's commit; without
    a writer, in a transaction of its own); on failure count the attempt and schedule a retry."""
    writer = writer or Writer(database, group_commit=False)
    try:
        done: service.Processed = writer.call(
            lambda session: service.process(session, inbox_id=inbox_id, now=clock())
        )
    except Exception as exc:
        log.warning("webhook_processing_failed", inbox_id=inbox_id, error=repr(exc))
        with database.unit_of_work() as session:
            failure = service.record_failure(session, inbox_id=inbox_id, error=exc, now=clock())
        # Counted once committed, like the lag below: a figure for what really happened.
        if failure is not None:
            provider, outcome = failure
            metrics.webhook_inbox_retries.labels(provider=provider, outcome=outcome).inc()
        return "retry"
    if done.lag_s is not None:
        metrics.webhook_inbox_lag.labels(provider=done.provider).observe(max(0.0, done.lag_s))
    return done.outcome


def retry_due(
    database: Database,
    clock: Clock,
    *,
    limit: int = service.DUE_BATCH_MAX,
    writer: Writer | None = None,
) -> int:
    """Process the inbox entries whose retry time has come; returns how many were tried.

    Each is claimed first (its `next_attempt_at` leased `CLAIM_LEASE_S` ahead), so another
    process's run passes it over; processing then sets the real next attempt, or none."""
    now = clock()
    due = claims.claim(
        database,
        service.due(now=now, limit=limit),
        table=inbox,
        lease=inbox.c.next_attempt_at,
        until=now + timedelta(seconds=CLAIM_LEASE_S),
    )
    for inbox_id in due:
        process(database, inbox_id, clock, writer=writer)
    return len(due)
