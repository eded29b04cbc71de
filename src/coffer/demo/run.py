"""`coffer demo`'s driver: a database, the assembled app, the tour over ASGI, then --serve."""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterator

import httpx

from coffer import auth
from coffer.api.app import API_PREFIX
from coffer.config import Settings
from coffer.demo.tour import Echo, Tour
from coffer.server import Coffer, build

KEY_LABEL = "coffer demo"


def run_demo(
    settings: Settings,
    *,
    database_url: str | None,
    echo: Echo,
    serve: bool = False,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> int:
    """The tour on `database_url` (default: a temporary SQLite file, removed at the end); 0 when
    every step and the final verify passed, else 1. With `serve`, then serve that database."""
    with _database(database_url) as (url, where):
        coffer = build(settings.model_copy(update={"database_url": url}), first_admin_key=False)
        try:
            with coffer.database.unit_of_work() as session:
                admin = auth.create_api_key(session, role="admin", label=KEY_LABEL)
                service = auth.create_api_key(session, role="service", label=KEY_LABEL)
            try:
                return _tour(
                    coffer,
                    admin.key,
                    service.key,
                    where=where,
                    echo=echo,
                    serve=serve,
                    host=host,
                    port=port,
                )
            finally:
                # The tour's keys do not outlive it: a database given keeps no admin key
                # that nobody was shown (with --serve, they last until the server stops).
                with coffer.database.unit_of_work() as session:
                    for made in (admin, service):
                        auth.revoke_api_key(session, made.record.id)
        finally:
            coffer.close()


def _tour(
    coffer: Coffer,
    admin_key: str,
    service_key: str,
    *,
    where: str,
    echo: Echo,
    serve: bool,
    host: str,
    port: int,
) -> int:
    echo(f"coffer demo: the whole product through its HTTP API, on {where}")
    with _client(coffer) as client:
        result = Tour(client, admin_key=admin_key, service_key=service_key).run(echo)
    if not result.ok:
        echo(f"the demo FAILED at step {result.failed_step}: {result.reason}")
        return 1
    echo(f"all {result.steps_passed} steps passed; the books verify")
    if serve:
        _serve(coffer, admin_key=admin_key, host=host, port=port, echo=echo)
    return 0


@contextlib.contextmanager
def _database(database_url: str | None) -> Iterator[tuple[str, str]]:
    """(the URL, how to name it): the one given, or a temporary SQLite file removed after."""
    if database_url:
        yield database_url, "the database given"
        return
    with tempfile.TemporaryDirectory(prefix="coffer-demo-") as scratch:
        path = f"{scratch}/demo.db"
        yield f"sqlite:///{path}", f"a temporary SQLite database ({path})"


@contextlib.contextmanager
def _client(coffer: Coffer) -> Iterator[httpx.Client]:
    """Starlette's TestClient: the real app over ASGI, in this process, with no socket."""
    with warnings.catch_warnings():
        # It prefers the httpx2 fork; the pinned httpx works and is what Coffer ships.
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient
    base_url = f"http://coffer-demo{API_PREFIX}"
    with TestClient(coffer.app, base_url=base_url, client=("127.0.0.1", 50_000)) as client:
        yield client


def _serve(coffer: Coffer, *, admin_key: str, host: str, port: int, echo: Echo) -> None:
    """Leave the app up on the tour's database, with its background jobs, until Ctrl-C."""
    import uvicorn

    base = f"http://{host}:{port}"
    echo("")
    echo(f"serving the demo's database at {base} (API {base}{API_PREFIX}, docs {base}/docs)")
    echo("admin key (for the console and /api/v1/admin/*):")
    echo(admin_key)
    echo("Ctrl-C stops it")
    background = coffer.background().start()
    try:
        uvicorn.run(
            coffer.app,
            host=host,
            port=port,
            log_level=coffer.settings.log_level,
            access_log=False,
            proxy_headers=False,
        )
    finally:
        background.stop()
