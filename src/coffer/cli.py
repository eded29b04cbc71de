"""The `coffer` command line. Each command parses, calls one function, and shapes the output."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from coffer.config import ConfigError, Settings

app = typer.Typer(
    name="coffer",
    help="Wallets, a double-entry ledger and payments for apps with an in-app currency.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _settings(database_url: str | None = None) -> Settings:
    try:
        settings = Settings()
        if database_url:
            settings = settings.model_copy(update={"database_url": database_url})
        _ = settings.shop  # a bad coffer.toml is refused here, before anything starts
    except ConfigError as exc:
        typer.echo(f"coffer: bad configuration:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    return settings


DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="overrides COFFER_DATABASE_URL", show_default=False),
]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="overrides COFFER_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="overrides COFFER_PORT")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Migrate the database, then serve the API (default http://127.0.0.1:8000)."""
    import uvicorn

    from coffer.server import build, configure_logging

    settings = _settings(database_url)
    configure_logging(settings.log_level)
    coffer = build(settings)
    for line in coffer.startup_notes:
        typer.echo(line, err=True)
    uvicorn.run(
        coffer.app,
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level,
        access_log=False,
    )


@app.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Bring the database schema up to date (safe to run again)."""
    from coffer.db import Database
    from coffer.db import migrate as run_migrations
    from coffer.db.migrate import current_revision

    settings = _settings(database_url)
    database = Database.connect(settings.database_url)
    try:
        run_migrations(database)
        typer.echo(f"schema at revision {current_revision(database)}")
    finally:
        database.dispose()


@app.command()
def verify(
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Check the books against every invariant; exit status 1 if any is broken."""
    from coffer.audit.verify import verify_books
    from coffer.db import Database

    settings = _settings(database_url)
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


@app.command()
def bench(
    database_url: DatabaseUrl = None,
    workload: Annotated[str, typer.Option(help="uncontended | hot | holds")] = "uncontended",
    clients: Annotated[int, typer.Option(min=1, max=1024, help="concurrent submitters")] = 16,
    seconds: Annotated[float, typer.Option(min=0.5, max=3600, help="measured duration")] = 10.0,
    accounts: Annotated[int, typer.Option(min=2, max=10_000_000, help="accounts in play")] = 10_000,
    preload: Annotated[
        int, typer.Option(min=0, help="transfers of history written (untimed) before measuring")
    ] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object on the last line")
    ] = False,
) -> None:
    """Measure ledger throughput and latency through group commit, then verify the books."""
    from coffer.bench import WORKLOADS, BenchOptions, run_bench

    if workload not in WORKLOADS:
        typer.echo(f"coffer: --workload must be one of {', '.join(WORKLOADS)}", err=True)
        raise typer.Exit(2)
    settings = _settings(database_url)
    options = BenchOptions(
        database_url=settings.database_url,
        workload=workload,
        clients=clients,
        seconds=seconds,
        accounts=accounts,
        preload=preload,
    )
    result = run_bench(options, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
    else:
        result.print_table()
    raise typer.Exit(0 if result.verified else 1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
