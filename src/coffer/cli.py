"""The `coffer` command line. Each command parses, calls one function, and shapes the output."""

from __future__ import annotations

import contextlib
import enum
import gc
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from coffer.config import ConfigError, Settings
from coffer.errors import CofferError

if TYPE_CHECKING:
    from coffer.db import Database

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
    except ValidationError as exc:
        # Name the variable and the reason, never the value: it may be a secret.
        reasons = "\n".join(
            f"  COFFER_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        typer.echo(f"coffer: bad settings:\n{reasons}", err=True)
        raise typer.Exit(2) from None
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

    settings = _settings(database_url)
    if workers > 1:
        # Each worker is a fresh process that reads its settings from the environment; this
        # process reads them again so that it agrees with its workers.
        share_with_workers(settings)
        settings = _settings()
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


GROUP_COMMIT_CHOICES = {"both": (True, False), "on": (True,), "off": (False,)}


@app.command()
def bench(
    database_url: DatabaseUrl = None,
    workload: Annotated[
        str | None,
        typer.Option(
            help="ledger: uncontended | hot | holds; --http: a comma-separated list of "
            "floor, balance, topup, gift, gift-hot, packages",
            show_default=False,
        ),
    ] = None,
    clients: Annotated[
        int | None,
        typer.Option(
            min=1, max=4096, help="concurrent clients [16; --http: 64]", show_default=False
        ),
    ] = None,
    seconds: Annotated[float, typer.Option(min=0.5, max=3600, help="measured duration")] = 10.0,
    accounts: Annotated[int, typer.Option(min=2, max=10_000_000, help="accounts in play")] = 10_000,
    preload: Annotated[
        int, typer.Option(min=0, help="transfers of history written (untimed) before measuring")
    ] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object on the last line")
    ] = False,
    http: Annotated[
        bool, typer.Option("--http", help="drive `coffer serve` over loopback instead")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, max=64, help="--http: serve workers")] = 1,
    duration_s: Annotated[
        float, typer.Option("--duration-s", min=0.2, max=3600, help="--http: each run's window")
    ] = 10.0,
    requests_max: Annotated[
        int, typer.Option(min=1, help="--http: at most this many operations a run")
    ] = 10_000_000,
    users: Annotated[int, typer.Option(min=2, max=100_000, help="--http: users in play")] = 100,
    group_commit: Annotated[
        str, typer.Option(help="--http: money workloads with group commit both | on | off")
    ] = "both",
    results: Annotated[
        str, typer.Option(help="--http: append each run as a JSON line here ('' for none)")
    ] = "bench/results.jsonl",
) -> None:
    """Measure ledger throughput and latency through group commit, then verify the books;
    with --http, the API itself over loopback against a bare-FastAPI floor."""
    if http:
        _bench_http(
            database_url,
            workload or "floor,balance,topup,gift,gift-hot",
            clients=clients or 64,
            workers=workers,
            duration_s=duration_s,
            requests_max=requests_max,
            users=users,
            group_commit=group_commit,
            results=results,
            as_json=as_json,
        )
    from coffer.bench import WORKLOADS, BenchOptions, run_bench

    workload = workload or "uncontended"
    if workload not in WORKLOADS:
        typer.echo(f"coffer: --workload must be one of {', '.join(WORKLOADS)}", err=True)
        raise typer.Exit(2)
    settings = _settings(database_url)
    options = BenchOptions(
        database_url=settings.database_url,
        workload=workload,
        clients=clients or 16,
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


def _bench_http(
    database_url: str | None,
    workloads: str,
    *,
    clients: int,
    workers: int,
    duration_s: float,
    requests_max: int,
    users: int,
    group_commit: str,
    results: str,
    as_json: bool,
) -> None:
    import tempfile
    from pathlib import Path

    from coffer.bench.http import HTTP_WORKLOADS, HttpBenchOptions, run_http_bench

    names = tuple(name.strip() for name in workloads.split(",") if name.strip())
    unknown = [name for name in names if name not in HTTP_WORKLOADS]
    if unknown or not names:
        typer.echo(f"coffer: --workload takes some of {', '.join(HTTP_WORKLOADS)}", err=True)
        raise typer.Exit(2)
    if group_commit not in GROUP_COMMIT_CHOICES:
        typer.echo("coffer: --group-commit must be both, on or off", err=True)
        raise typer.Exit(2)
    with tempfile.TemporaryDirectory(prefix="coffer-bench-") as scratch:
        url = database_url or f"sqlite:///{scratch}/bench.db"
        options = HttpBenchOptions(
            database_url=url,
            workloads=names,
            group_commit=GROUP_COMMIT_CHOICES[group_commit],
            workers=workers,
            clients=clients,
            duration_s=duration_s,
            requests_max=requests_max,
            users=users,
            results_path=Path(results) if results else None,
        )
        result = run_http_bench(options, progress=not as_json)
    if as_json:
        typer.echo(json.dumps([run.as_dict() for run in result.runs]))
    else:
        result.print_table()
    raise typer.Exit(0 if result.ok else 1)


class KeyRole(enum.StrEnum):
    admin = "admin"
    service = "service"


keys_app = typer.Typer(
    help="API keys (admin or service): create, list, revoke.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")


@contextlib.contextmanager
def _migrated(settings: Settings) -> Iterator[Database]:
    """The database, brought up to date first (a fresh one works without `coffer migrate`)."""
    from coffer.db import Database
    from coffer.db import migrate as run_migrations

    database = Database.connect(settings.database_url)
    try:
        run_migrations(database)
        yield database
    finally:
        database.dispose()


def _refuse(exc: CofferError) -> typer.Exit:
    typer.echo(f"coffer: {exc.message}", err=True)
    return typer.Exit(2)


@keys_app.command("create")
def keys_create(
    role: Annotated[KeyRole, typer.Option("--role", help="admin or service", show_default=False)],
    label: Annotated[
        str | None, typer.Option(help="a note to tell keys apart", show_default=False)
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Make an API key; it is printed once, alone on the last line, and stored only as a hash."""
    from coffer import auth

    settings = _settings(database_url)
    try:
        with _migrated(settings) as database, database.unit_of_work() as session:
            made = auth.create_api_key(session, role=role.value, label=label)
    except CofferError as exc:
        raise _refuse(exc) from exc
    typer.echo(f"created {made.record.role} key {made.record.id} ({made.record.prefix}...)")
    typer.echo("it is shown this once and stored only as a hash; keep it now:")
    typer.echo(made.key)


@keys_app.command("list")
def keys_list(
    limit: Annotated[int, typer.Option(min=1, max=500, help="keys to show")] = 100,
    database_url: DatabaseUrl = None,
) -> None:
    """List API keys (never the keys themselves: only their first characters)."""
    from coffer import auth
    from coffer.kit.clock import rfc3339

    settings = _settings(database_url)
    with _migrated(settings) as database, database.read() as session:
        found = auth.list_api_keys(session, limit=limit)
    for key in found:
        last_used = rfc3339(key.last_used_at) if key.last_used_at else "never"
        state = f"revoked {rfc3339(key.revoked_at)}" if key.revoked_at else "active"
        typer.echo(
            f"{key.id}  {key.role:<7}  {key.prefix}...  created {rfc3339(key.created_at)}"
            f"  last used {last_used}  {state}  {key.label or ''}".rstrip()
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (key_...), from `coffer keys list`")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke an API key: requests with it are refused from now on."""
    from coffer import auth

    settings = _settings(database_url)
    try:
        with _migrated(settings) as database, database.unit_of_work() as session:
            revoked = auth.revoke_api_key(session, key_id)
    except CofferError as exc:
        raise _refuse(exc) from exc
    typer.echo(f"revoked {revoked.role} key {revoked.id} ({revoked.prefix}...)")


@app.command()
def token(
    user_id: Annotated[str, typer.Argument(help="the user the token speaks for")],
    ttl_s: Annotated[
        int, typer.Option("--ttl-s", min=60, max=30 * 24 * 3600, help="lifetime in seconds")
    ] = 3600,
    database_url: DatabaseUrl = None,
) -> None:
    """Mint a user token (JWT) signed with COFFER_JWT_SECRET, or the database's own secret."""
    from coffer import auth
    from coffer.kit.clock import rfc3339, utc_now

    settings = _settings(database_url)
    if settings.env == "production" and settings.jwt_secret is None:
        # A generated secret would sign tokens the production server refuses to start without.
        typer.echo("coffer: COFFER_JWT_SECRET is required in production", err=True)
        raise typer.Exit(2)
    configured = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    try:
        with _migrated(settings) as database, database.unit_of_work() as session:
            secret = auth.jwt_secret(session, configured=configured)
        issued = auth.mint_user_token(secret, user_id=user_id, ttl_s=ttl_s, now=utc_now())
    except CofferError as exc:
        raise _refuse(exc) from exc
    typer.echo(f"expires at {rfc3339(issued.expires_at)}", err=True)
    typer.echo(issued.token)


@app.command()
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
    settings = _settings()
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


tasks_app = typer.Typer(help="The background jobs `coffer serve` runs on a schedule.")
app.add_typer(tasks_app, name="tasks")


@tasks_app.command("run")
def tasks_run(
    name: Annotated[
        str | None, typer.Argument(help="one job (default: every job once)", show_default=False)
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the background jobs once, now (each bounded, as on the schedule)."""
    from coffer.server import build

    settings = _settings(database_url)
    coffer = build(settings, first_admin_key=False)
    try:
        jobs = coffer.background()
        names = jobs.names if name is None else [name]
        unknown = [n for n in names if n not in jobs.names]
        if unknown:
            typer.echo(f"coffer: no job {unknown[0]!r}; jobs: {', '.join(jobs.names)}", err=True)
            raise typer.Exit(2)
        failed = False
        for job in names:
            try:
                typer.echo(f"{job}: {jobs.run_now(job)}")
            except Exception as exc:  # report each job's failure, run the rest
                failed = True
                typer.echo(f"{job}: failed: {type(exc).__name__}: {exc}", err=True)
        if failed:
            raise typer.Exit(1)
    finally:
        coffer.close()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
