"""`coffer bench`: the ledger through group commit, or the API itself over loopback."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from coffer.cli.common import DatabaseUrl, load_settings

GROUP_COMMIT_CHOICES = {"both": (True, False), "on": (True,), "off": (False,)}


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
    settings = load_settings(database_url)
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


__all__ = ["GROUP_COMMIT_CHOICES", "bench"]
