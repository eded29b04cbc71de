"""Payout steps that talk to a provider, kept apart from the units of work around them.

A provider call can take seconds and must never run inside a transaction (on SQLite it would
hold the database's write lock, on PostgreSQL the ledger's chain head). So a payout is held in
one unit of work (`service.plan_request_payout`, committed by the route), the provider is asked
here with no transaction open, and its answer is booked in another (`settlement.settle` through
the writer). A crash or an outage between the two leaves the payout `pending` with its hold;
the reconciler (`tasks.reconcile_payouts`) asks again with the same idempotency key, so the
provider makes the payout at most once.
"""

from __future__ import annotations

import structlog
from sqlalchemy.orm import Session

from coffer.db import Database, Writer
from coffer.errors import ProviderDisabled, ProviderRejected, ProviderUnavailable
from coffer.kit.clock import Clock
from coffer.payouts import records, settlement
from coffer.payouts.records import Payout
from coffer.providers import Providers
from coffer.providers.base import PayeePayoutRequest, ProviderPayout

log = structlog.get_logger(__name__)


def send_payout(
    database: Database,
    providers: Providers,
    *,
    payout_id: str,
    clock: Clock,
    writer: Writer | None = None,
) -> Payout:
    """Ask the provider to pay a pending payout not yet sent, and book its answer.

    A refusal fails the payout (its hold is voided); an outage leaves it pending for the
    reconciler. Sending twice is safe: the provider's idempotency key is the payout's own."""
    writer = writer or Writer(database, group_commit=False)
    with database.read() as session:
        payout = records.get_payout(session, payout_id)
    if payout.status != "pending" or payout.provider_payout_id is not None:
        return payout
    try:
        answer = providers.get(payout.provider).create_payout(
            PayeePayoutRequest(
                payout_id=payout.idempotency_key,  # names the attempt, for its webhooks
                idempotency_key=payout.idempotency_key,
                account_id=payout.provider_account_id,
                amount=payout.payout_amount,
                currency=payout.payout_currency,
                destination_type=payout.destination_type,
                description="Coffer payout",
            )
        )
    except ProviderRejected as exc:
        refused = exc.message
        log.warning("payout_rejected", payout_id=payout.id, error=str(exc))
        return _book(writer, payout, status="failed", reason=refused, clock=clock)
    except (ProviderUnavailable, ProviderDisabled) as exc:
        log.warning("payout_provider_unavailable", payout_id=payout.id, error=str(exc))
        return payout
    return _book_answer(writer, payout, answer, clock=clock)


def check_payout(
    database: Database,
    providers: Providers,
    *,
    payout: Payout,
    clock: Clock,
    writer: Writer | None = None,
) -> Payout:
    """Ask the provider how a sent payout stands and book that (the reconciler's step)."""
    writer = writer or Writer(database, group_commit=False)
    if payout.provider_payout_id is None:
        return send_payout(database, providers, payout_id=payout.id, clock=clock, writer=writer)
    answer = providers.get(payout.provider).fetch_payout(payout_id=payout.provider_payout_id)
    return _book_answer(writer, payout, answer, clock=clock)


def _book_answer(writer: Writer, payout: Payout, answer: ProviderPayout, *, clock: Clock) -> Payout:
    if (answer.amount, answer.currency) != (payout.payout_amount, payout.payout_currency):
        # Never book a payout the provider made for another sum: an operator must look.
        raise ProviderRejected(
            f"the provider's payout {answer.payout_id} is for {answer.amount} "
            f"{answer.currency}, not {payout.payout_amount} {payout.payout_currency}",
            payout_id=payout.id,
        )
    return _book(
        writer,
        payout,
        status=answer.status,
        reason=answer.failure_reason,
        provider_payout_id=answer.payout_id,
        clock=clock,
    )


def _book(
    writer: Writer,
    payout: Payout,
    *,
    status: str,
    reason: str | None,
    clock: Clock,
    provider_payout_id: str | None = None,
) -> Payout:
    def book(session: Session) -> Payout:
        return settlement.settle(
            session,
            payout_id=payout.id,
            status=status,
            attempt=payout.attempt,
            provider_payout_id=provider_payout_id,
            reason=reason,
            now=clock(),
        )

    booked: Payout = writer.call(book)
    return booked
