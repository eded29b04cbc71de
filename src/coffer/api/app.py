"""The FastAPI application: routers under /api/v1, one error shape, OpenAPI at /openapi.json."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI

from coffer import __version__
from coffer.api import errors
from coffer.api.inputs import RefuseControlCharacters
from coffer.api.metrics import RequestMetrics
from coffer.api.routers import admin_analytics as admin_analytics_routes
from coffer.api.routers import admin_audit as admin_audit_routes
from coffer.api.routers import admin_disputes as admin_dispute_routes
from coffer.api.routers import admin_ledger as admin_ledger_routes
from coffer.api.routers import admin_payments as admin_payment_routes
from coffer.api.routers import admin_stats as admin_stats_routes
from coffer.api.routers import admin_transactions as admin_transaction_routes
from coffer.api.routers import admin_users as admin_user_routes
from coffer.api.routers import admin_webhooks as admin_webhook_routes
from coffer.api.routers import auth as auth_routes
from coffer.api.routers import calls as call_routes
from coffer.api.routers import config as config_routes
from coffer.api.routers import escrows as escrow_routes
from coffer.api.routers import events as event_routes
from coffer.api.routers import gifts as gift_routes
from coffer.api.routers import kyc as kyc_routes
from coffer.api.routers import metrics as metrics_routes
from coffer.api.routers import payouts as payout_routes
from coffer.api.routers import streams as stream_routes
from coffer.api.routers import subscriptions as subscription_routes
from coffer.api.routers import users as user_routes
from coffer.api.routers import wallet as wallet_routes
from coffer.api.routers import webhooks as webhook_routes
from coffer.db import Database

API_PREFIX = "/api/v1"


def create_app(*, database: Database, **state: Any) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        # The reads awaited on this event loop hold connections of its own (db/async_reads.py).
        await database.async_reads.aclose()

    app = FastAPI(
        lifespan=lifespan,
        title="Coffer",
        version=__version__,
        summary="Wallets, a double-entry ledger and payments for apps with an in-app currency.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.database = database
    for name, value in state.items():
        setattr(app.state, name, value)
    errors.install(app)
    # Before routing: no control character reaches a route, a log line or the database.
    app.add_middleware(RefuseControlCharacters)
    # Added last, so outermost of Coffer's own: it counts the refusals above too.
    app.add_middleware(RequestMetrics, prefix=API_PREFIX)

    health = APIRouter(tags=["health"], responses=errors.responses(*errors.ANY, 503))

    @health.get("/healthz", summary="Liveness and database reachability")
    def healthz() -> dict[str, str]:
        with database.read() as session:
            session.connection().exec_driver_sql("SELECT 1")
        return {"status": "ok", "database": database.dialect}

    # FastAPI matches a request against each included router in turn, trying every route of
    # each (and the chosen router's again to handle it): a request pays for every router
    # before its own, 5-10 µs each (bench/README.md, "Routing"). So the routers that apps call
    # per user action come first, the ones operators call last; no two routers' paths overlap,
    # so the order changes nothing else (OpenAPI lists paths in this order too).
    for hot in (wallet_routes, gift_routes, call_routes, event_routes, stream_routes):
        app.include_router(hot.router, prefix=API_PREFIX)
    app.include_router(health)
    # Where a Prometheus scrape config looks by default, and beside the rest of the API.
    app.include_router(metrics_routes.router)
    app.include_router(metrics_routes.router, prefix=API_PREFIX)
    app.include_router(health, prefix=API_PREFIX)
    app.include_router(auth_routes.router, prefix=API_PREFIX)
    app.include_router(user_routes.router, prefix=API_PREFIX)
    app.include_router(config_routes.router, prefix=API_PREFIX)
    app.include_router(escrow_routes.router, prefix=API_PREFIX)
    app.include_router(payout_routes.router, prefix=API_PREFIX)
    app.include_router(subscription_routes.router, prefix=API_PREFIX)
    app.include_router(webhook_routes.router, prefix=API_PREFIX)
    app.include_router(admin_payment_routes.router, prefix=API_PREFIX)
    app.include_router(admin_ledger_routes.router, prefix=API_PREFIX)
    app.include_router(admin_transaction_routes.router, prefix=API_PREFIX)
    app.include_router(admin_stats_routes.router, prefix=API_PREFIX)
    app.include_router(admin_dispute_routes.router, prefix=API_PREFIX)
    app.include_router(kyc_routes.router, prefix=API_PREFIX)
    app.include_router(admin_user_routes.router, prefix=API_PREFIX)
    app.include_router(admin_audit_routes.router, prefix=API_PREFIX)
    app.include_router(admin_webhook_routes.router, prefix=API_PREFIX)
    app.include_router(admin_analytics_routes.router, prefix=API_PREFIX)
    return app
