"""Running Coffer: serve the API, migrate the schema, verify the books, and the demo tour."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Annotated

import typer

from coffer.cli.common import DatabaseUrl, load_settings
from coffer.config import ConfigError


def serve(
    host: Annotated[str | None, typer.Option(help="overrides COFFER_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="overrides COFFER_PORT")] = None,
    database_url: DatabaseUrl = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="worker processes, each with its own app")
    ] = 1,
) -> None:
    """Migrate the database, then serve the API (default http://127.0.0.1:8000)."""
    with _metrics_dir(workers):
        _serve(host=host, port=port, database_url=database_url, workers=workers)


@contextlib.contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """With several workers, a fresh PROMETHEUS_MULTIPROC_DIR for this server's processes
    (unless the operator set one), made before prometheus_client is first imported (it picks
    its multiprocess mode then) and removed when the server stops, so one server's figures
    never leak into the next. The workers inherit it; GET /metrics adds their files up."""
    if workers == 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    assert "prometheus_client" not in sys.modules, "imported before its mode was chosen"
    path = tempfile.mkdtemp(prefix="coffer-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(path, ignore_errors=True)


def _serve(*, host: str | None, port: int | None, database_url: str | None, workers: int) -> None:
    import uvicorn

    from coffer.server import build, configure_logging, share_with_workers

    settings = load_settings(database_url)
    if workers > 1:
        # Each worker is a fresh process that reads its settings from the environment; this
        # process reads them again so that it agrees with its workers.
        share_with_workers(settings)
        settings = load_settings()
    configure_logging(settings.log_level)
    # Start-up work that must happen once (migrations, the first admin key) happens here, in
    # this process, before any worker starts; the workers only assemble their app.
    try:
        coffer = build(settings)
    except ConfigError as exc:
        typer.echo(f"coffer: refusing to start:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    for line in coffer.startup_notes:
        typer.echo(line, err=True)
    background = coffer.background().start()
    try:
        # Forwarded headers are read by Coffer itself, only from COFFER_TRUSTED_PROXIES
        # (api/deps.py): uvicorn's own rewriting would trust any loopback peer.
        if workers == 1:
            # Everything made at start-up lives as long as the process: keep the garbage
            # collector from re-scanning it on every collection (measured 5-10% on the
            # ledger's hot path).
            gc.freeze()
            uvicorn.run(
                coffer.app,
                host=host or settings.host,
                port=port or settings.port,
                log_level=settings.log_level,
                access_log=False,
                proxy_headers=False,
            )
        else:
            uvicorn.run(
                "coffer.server:worker_app",
                factory=True,
                workers=workers,
                host=host or settings.host,
                port=port or settings.port,
                log_level=settings.log_level,
                access_log=False,
                proxy_headers=False,
            )
    finally:
        background.stop()
        coffer.close()


def migrate(database_url: DatabaseUrl = None) -> None:
    """Bring the database schema up to date (safe to run again)."""
    from coffer.db import Database
    from coffer.db import migrate as run_migrations
    from coffer.db.migrate import current_revision

    settings = load_settings(database_url)
    database = Database.connect(settings.database_url)
    try:
        run_migrations(database)
        typer.echo(f"schema at revision {current_revision(database)}")
    finally:
        database.dispose()


def verify(
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Check the books against every invariant; exit status 1 if any is broken."""
    from coffer.audit.verify import verify_books
    from coffer.db import Database

    settings = load_settings(database_url)
    database = Database.connect(settings.database_url)
    try:
        report = verify_books(database)
    finally:
        database.dispose()
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        typer.echo(
            f"{report.transfers} transfers, {report.accounts} accounts, "
            f"{report.open_holds} open holds"
        )
        for check in report.checks:
            mark = "ok  " if check.ok else "FAIL"
            typer.echo(f"  {mark} {check.number}. {check.name}")
            for problem in check.problems:
                typer.echo(f"         - {problem}")
            if check.problem_count > len(check.problems):
                typer.echo(f"         ... and {check.problem_count - len(check.problems)} more")
        typer.echo("the books verify" if report.ok else "THE BOOKS DO NOT VERIFY")
    raise typer.Exit(0 if report.ok else 1)


def demo(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="run on this database instead of a temporary SQLite file (it must be fresh)",
            show_default=False,
        ),
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="after the tour, serve its database until Ctrl-C")
    ] = False,
    host: Annotated[str | None, typer.Option(help="--serve: overrides COFFER_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="--serve: overrides COFFER_PORT")] = None,
) -> None:
    """A scripted tour through the HTTP API on a fresh database: users, a top-up, gifts, a call,
    an escrow, a payout, a refund, a subscription, the audit; exit status 1 if a step fails."""
    from coffer.demo import run_demo

    # Never COFFER_DATABASE_URL: the tour writes users and money, so it runs where it is told.
    settings = load_settings()
    try:
        status = run_demo(
            settings,
            database_url=database_url,
            echo=typer.echo,
            serve=serve,
            host=host or settings.host,
            port=port or settings.port,
        )
    except ConfigError as exc:
        typer.echo(f"coffer: refusing to start:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(status)


__all__ = ["demo", "migrate", "serve", "verify"]
