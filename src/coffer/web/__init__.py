"""The operator console at /console: server-rendered pages (Jinja2, htmx, ECharts, all served
from `static/`), signed in with an admin key. Every page reads through the service functions
the admin API's routes call, and every action is the same service call with the operator's
key as the actor and their reason in the audit log (STYLE habit 1: thin edges).

The composition root mounts it beside the API (`coffer.server.assemble` calls `install`): the
API and the console are siblings and neither imports the other.
"""

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from coffer.web import (
    routes_auth,
    routes_ops,
    routes_overview,
    routes_transactions,
    routes_users,
    routes_webhooks,
)
from coffer.web.render import STATIC_DIR

PREFIX = "/console"
STATIC_PATH = f"{PREFIX}/static"

router = APIRouter(include_in_schema=False)
for module in (
    routes_auth,
    routes_overview,
    routes_transactions,
    routes_users,
    routes_ops,
    routes_webhooks,
):
    router.include_router(module.router, prefix=PREFIX)


def install(app: FastAPI) -> None:
    """Serve the console's pages under /console and its vendored scripts under /console/static
    (neither appears in the OpenAPI document)."""
    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="console-static")


__all__ = ["PREFIX", "STATIC_DIR", "STATIC_PATH", "install", "router"]
