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
from sqlalchemy import MetaData

import coffer
from coffer import auth, ledger, wallets
from coffer.api.app import create_app
from coffer.config import Settings
from coffer.db import Database, migrate
from coffer.db.base import metadata as app_metadata
from coffer.idempotency.tasks import purge_expired_keys
from coffer.kit.clock import utc_now
from coffer.kit.periodic import Job, Periodic
from coffer.payments import flows as payment_flows
from coffer.providers import Providers
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

    def background(self) -> Periodic:
        """The bounded jobs a serving process runs besides answering requests."""
        database = self.database
        providers: Providers = self.app.state.providers
        jobs = [
            # Holds past their timeout release their funds even if nothing touches them.
            Job("ledger.expire_holds", HOLD_SWEEP_INTERVAL_S, lambda: _expire_holds(database)),
            # Webhooks whose processing failed are retried with backoff from the inbox.
            Job(
                "webhooks.retry",
                WEBHOOK_RETRY_INTERVAL_S,
                lambda: webhook_flows.retry_due(database, utc_now),
            ),
            Job(
                "payments.resume_refunds",
                REFUND_RESUME_INTERVAL_S,
                lambda: payment_flows.resume_refunds(database, providers, utc_now),
            ),
            Job(
                "idempotency.purge",
                IDEMPOTENCY_PURGE_INTERVAL_S,
                lambda: purge_expired_keys(database),
            ),
        ]
        return Periodic(jobs)

    def close(self) -> None:
        if self.rate_limiter is not None:
            self.rate_limiter.close()
        self.database.dispose()


HOLD_SWEEP_INTERVAL_S = 5.0
WEBHOOK_RETRY_INTERVAL_S = 5.0
IDEMPOTENCY_PURGE_INTERVAL_S = 3_600.0
REFUND_RESUME_INTERVAL_S = 30.0


def _expire_holds(database: Database) -> int:
    with database.read() as session:
        if not ledger.has_expired_holds(session):
            return 0  # the usual case: no write transaction at all
    with database.unit_of_work() as session:
        return ledger.expire_holds(session)


def build(
    settings: Settings, *, run_migrations: bool = True, first_admin_key: bool = True
) -> Coffer:
    """Connect, migrate and assemble. `coffer serve` takes the default `first_admin_key=True`;
    other callers that cannot show a one-time key to an operator pass False."""
    database = Database.connect(settings.database_url)
    if run_migrations:
        migrate(database)
    return assemble(settings, database, first_admin_key=first_admin_key)


def assemble(settings: Settings, database: Database, *, first_admin_key: bool = False) -> Coffer:
    """Everything above an open, migrated database (tests bring their own database)."""
    notes: list[str] = []
    configured_secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    with database.unit_of_work() as session:
        wallets.define_assets(session, settings.shop)
        # COFFER_JWT_SECRET, or the one generated on the first start and kept in the database.
        jwt_secret = auth.jwt_secret(session, configured=configured_secret)
        issued = auth.issue_first_admin_key(session) if first_admin_key else None
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
    app = create_app(
        database=database,
        settings=settings,
        authenticator=auth.Authenticator(database, jwt_secret=jwt_secret),
        rate_limiter=rate_limiter,
        providers=Providers.from_settings(settings),
    )
    return Coffer(
        settings=settings,
        database=database,
        app=app,
        startup_notes=notes,
        rate_limiter=rate_limiter,
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
    gc.freeze()
    return coffer.app
