"""The composition root: builds the database, providers and the HTTP app from settings."""

from __future__ import annotations

import atexit
import gc
import importlib
import logging
import os
import pkgutil
import secrets
import sys
from dataclasses import dataclass, field

import structlog
from fastapi import FastAPI
from prometheus_client import multiprocess
from sqlalchemy import MetaData

import coffer
from coffer import auth, events, ledger, wallets, web
from coffer.analytics import check_success_floor
from coffer.api.app import create_app
from coffer.calls import tasks as call_tasks
from coffer.config import Settings
from coffer.db import Database, Writer, migrate
from coffer.db.base import metadata as app_metadata
from coffer.escrow import settlement as escrow_settlement
from coffer.escrow import tasks as escrow_tasks
from coffer.events.tasks import purge_old_events
from coffer.idempotency.tasks import purge_expired_keys
from coffer.kit.clock import utc_now
from coffer.kit.periodic import Job, Periodic
from coffer.outbound import service as outbound_service
from coffer.outbound import tasks as outbound_tasks
from coffer.outbound.urls import UrlPolicy
from coffer.payments import refund_flows, settlement
from coffer.payouts import tasks as payout_tasks
from coffer.providers import Providers
from coffer.subscriptions import tasks as subscription_tasks
from coffer.webhooks import flows as webhook_flows


def all_metadata() -> list[MetaData]:
    """Every table in Coffer, for migrations and schema checks.

    Each domain keeps its tables in its own `tables.py`; importing them all registers them on
    the shared metadata, so a new domain needs no line here.
    """
    for module in pkgutil.walk_packages(coffer.__path__, prefix="coffer."):
        if module.name.endswith(".tables"):
            importlib.import_module(module.name)
    return [ledger.metadata, app_metadata]


def configure_logging(level: str = "info") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )


@dataclass
class Coffer:
    settings: Settings
    database: Database
    app: FastAPI
    # Lines for the operator at start-up (e.g. a fresh database's one-time admin key).
    startup_notes: list[str] = field(default_factory=list)
    rate_limiter: auth.RateLimiter | None = None
    writer: Writer | None = None
    hub: events.Hub | None = None

    def background(self) -> Periodic:
        """The bounded jobs a serving process runs besides answering requests."""
        database = self.database
        providers: Providers = self.app.state.providers
        jobs = [
            # Holds past their timeout release their funds even if nothing touches them.
            Job(
                "ledger.expire_holds",
                HOLD_SWEEP_INTERVAL_S,
                lambda: _expire_holds(database, self.writer),
            ),
            # Webhooks whose processing failed are retried with backoff from the inbox.
            Job(
                "webhooks.retry",
                WEBHOOK_RETRY_INTERVAL_S,
                lambda: webhook_flows.retry_due(database, utc_now, writer=self.writer),
            ),
            Job(
                "payments.resume_refunds",
                REFUND_RESUME_INTERVAL_S,
                lambda: refund_flows.resume_refunds(
                    database, providers, utc_now, writer=self.writer
                ),
            ),
            # Refunds the provider acknowledged but never settled: ask it, book the answer.
            Job(
                "payments.reconcile_refunds",
                REFUND_RECONCILE_INTERVAL_S,
                lambda: refund_flows.reconcile_refunds(
                    database, providers, utc_now, writer=self.writer
                ),
            ),
            # Payouts the provider never reported back on: ask it (or send again), book it.
            Job(
                "payouts.reconcile",
                PAYOUT_RECONCILE_INTERVAL_S,
                lambda: payout_tasks.reconcile_payouts(
                    database, providers, utc_now, writer=self.writer
                ),
            ),
            Job(
                "calls.expire",
                CALL_SWEEP_INTERVAL_S,
                lambda: call_tasks.expire_lapsed(database, self._writer(), utc_now),
            ),
            Job(
                "calls.warn",
                CALL_SWEEP_INTERVAL_S,
                lambda: call_tasks.warn_nearly_used(database, self._writer(), utc_now),
            ),
            # Escrows past their auto_release_at that nobody disputed go to their payee.
            Job(
                "escrow.auto_release",
                ESCROW_SWEEP_INTERVAL_S,
                lambda: escrow_tasks.release_due(database, self._writer(), clock=utc_now),
            ),
            # Wallet plans charged as periods fall due; retries, period ends, expiries.
            Job(
                "subscriptions.renew",
                SUBSCRIPTION_RENEW_INTERVAL_S,
                lambda: subscription_tasks.renew_due(
                    database, self._writer(), utc_now, self.settings.shop
                ),
            ),
            # Events go out to the host app's webhook endpoints, retried on their schedule.
            Job(
                "webhooks.deliver",
                OUTBOUND_DELIVERY_INTERVAL_S,
                lambda: outbound_tasks.deliver_due(
                    database,
                    utc_now,
                    policy=UrlPolicy.of(
                        env=self.settings.env,
                        allow_private=self.settings.webhook_allow_private,
                    ),
                ),
            ),
            # The payment success rate under COFFER_PAYMENT_SUCCESS_FLOOR: one alert a crossing.
            Job(
                "payments.success_floor",
                PAYMENT_FLOOR_INTERVAL_S,
                lambda: check_success_floor(
                    database,
                    self._writer(),
                    utc_now,
                    floor=self.settings.payment_success_floor,
                    window_s=self.settings.payment_success_window_s,
                    attempts_min=self.settings.payment_success_attempts_min,
                ),
            ),
            Job(
                "idempotency.purge",
                IDEMPOTENCY_PURGE_INTERVAL_S,
                lambda: purge_expired_keys(database),
            ),
            # The outbox keeps COFFER_EVENT_RETENTION_DAYS; streams older than that get `reset`.
            Job(
                "events.purge",
                EVENT_PURGE_INTERVAL_S,
                lambda: purge_old_events(
                    database,
                    utc_now,
                    retention_days=self.settings.event_retention_days,
                    keep_from=outbound_service.oldest_event_needed,  # endpoints still behind
                ),
            ),
        ]
        return Periodic(jobs)

    def close(self) -> None:
        self.close_writer()
        if self.hub is not None:
            self.hub.close()
        if self.rate_limiter is not None:
            self.rate_limiter.close()
        self.database.dispose()

    def _writer(self) -> Writer:
        assert self.writer is not None, "assemble() gives every Coffer a writer"
        return self.writer

    def close_writer(self) -> None:
        """Commit what is queued and stop the writer's thread (the database stays open)."""
        if self.writer is not None:
            self.writer.close()


log = structlog.get_logger(__name__)

MOCK_ANNOUNCEMENT = (
    "COFFER_MOCK_ENABLED=true: the mock provider is on beside real providers; its orders credit "
    "diamonds nobody paid for (development only)"
)
HOLD_SWEEP_INTERVAL_S = 5.0
CALL_SWEEP_INTERVAL_S = 5.0
ESCROW_SWEEP_INTERVAL_S = 30.0
SUBSCRIPTION_RENEW_INTERVAL_S = 60.0
WEBHOOK_RETRY_INTERVAL_S = 5.0
OUTBOUND_DELIVERY_INTERVAL_S = 2.0
IDEMPOTENCY_PURGE_INTERVAL_S = 3_600.0
EVENT_PURGE_INTERVAL_S = 3_600.0
REFUND_RESUME_INTERVAL_S = 30.0
REFUND_RECONCILE_INTERVAL_S = 300.0
PAYOUT_RECONCILE_INTERVAL_S = 60.0
PAYMENT_FLOOR_INTERVAL_S = 60.0


def _expire_holds(database: Database, writer: Writer | None) -> int:
    with database.read() as session:
        if not ledger.has_expired_holds(session):
            return 0  # the usual case: no write transaction at all
    writer = writer or Writer(database, group_commit=False)
    expired: int = writer.call(ledger.expire_holds)
    return expired


def build(
    settings: Settings, *, run_migrations: bool = True, first_admin_key: bool = True
) -> Coffer:
    """Connect, migrate and assemble. `coffer serve` takes the default `first_admin_key=True`;
    other callers that cannot show a one-time key to an operator pass False.

    ConfigError, before anything is touched, for settings that must not serve (production
    without COFFER_JWT_SECRET or with the mock forced on; a default provider that is off)."""
    settings.refuse_bad_startup()
    database = Database.connect(settings.database_url)
    if run_migrations:
        migrate(database)
    return assemble(settings, database, first_admin_key=first_admin_key)


def assemble(settings: Settings, database: Database, *, first_admin_key: bool = False) -> Coffer:
    """Everything above an open, migrated database (tests bring their own database)."""
    settings.refuse_bad_startup()
    # What a paid order settles into, per purpose (top-ups are payments' own).
    settlement.register("escrow", escrow_settlement.SETTLEMENT)
    notes: list[str] = []
    configured_secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    configured_mock = (
        settings.mock_webhook_secret.get_secret_value() if settings.mock_webhook_secret else None
    )
    mock_secret = None
    with database.unit_of_work() as session:
        wallets.define_assets(session, settings.shop)
        # COFFER_JWT_SECRET, or the one generated on the first start and kept in the database.
        jwt_secret = auth.jwt_secret(session, configured=configured_secret)
        if settings.mock_on:
            # Likewise the mock's secret, so its orders verify after a restart.
            mock_secret = auth.mock_webhook_secret(session, configured=configured_mock)
        issued = auth.issue_first_admin_key(session) if first_admin_key else None
    if settings.mock_beside_real_providers:
        # Every start says so: sandbox orders credit diamonds nobody paid for.
        log.warning(
            "mock_provider_enabled",
            message=MOCK_ANNOUNCEMENT,
            real_providers=settings.real_providers_configured,
        )
    if issued is not None:
        notes += [
            "This database had no admin key, so here is its first one. It is shown this once",
            "and stored only as a hash: keep it now (more: coffer keys create --role admin).",
            issued.key,
        ]
    rate_limiter = auth.RateLimiter(
        per_principal=settings.rate_limit,
        auth_failures=settings.auth_failure_rate_limit,
        storage_url=settings.redis_url or None,
    )
    # The live streams' wake-ups: the writer signals after each COMMIT, and on PostgreSQL (or
    # through Redis) the other processes hear of it too (events/live.py).
    hub = events.Hub(
        database,
        redis_url=settings.redis_url or None,
        poll_s=settings.stream_poll_s,
        connections_per_user_max=settings.stream_connections_per_user_max,
        connections_max=settings.stream_connections_max,
    )
    writer = Writer(
        database,
        group_commit=settings.group_commit,
        batch_size_max=settings.ledger_batch_size_max,
        queue_size_max=settings.ledger_queue_size_max,
        on_commit=hub.wake,
    )
    app = create_app(
        database=database,
        writer=writer,
        settings=settings,
        authenticator=auth.Authenticator(database, jwt_secret=jwt_secret),
        rate_limiter=rate_limiter,
        providers=Providers.from_settings(settings, mock_webhook_secret=mock_secret),
        hub=hub,
    )
    web.install(app)  # the operator console at /console, beside the API
    return Coffer(
        settings=settings,
        database=database,
        app=app,
        startup_notes=notes,
        rate_limiter=rate_limiter,
        writer=writer,
        hub=hub,
    )


def share_with_workers(settings: Settings) -> None:
    """Put what `coffer serve --workers N` decided into the environment its workers read.

    The database URL may have come from `--database-url`; and without a configured mock secret
    each process would draw its own, so a checkout signed by one worker would fail in another:
    the workers share one drawn here instead.
    """
    os.environ["COFFER_DATABASE_URL"] = settings.database_url
    if settings.mock_enabled and settings.mock_webhook_secret is None:
        os.environ["COFFER_MOCK_WEBHOOK_SECRET"] = secrets.token_hex(32)


def worker_app() -> FastAPI:
    """One `coffer serve --workers N` worker's app (uvicorn's factory, in a fresh process).

    The parent has migrated the database and issued the first admin key before starting the
    workers, so a worker only assembles; the periodic jobs run once, in the parent.
    """
    settings = Settings()
    configure_logging(settings.log_level)
    coffer = build(settings, run_migrations=False, first_admin_key=False)
    atexit.register(coffer.close)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Live gauges of a dead worker must not be summed in (its counters still count).
        atexit.register(multiprocess.mark_process_dead, os.getpid())
    gc.freeze()
    return coffer.app
