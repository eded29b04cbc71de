"""`coffer tasks run`: the background jobs, once, now."""

from __future__ import annotations

from typing import Annotated

import typer

from coffer.cli.common import DatabaseUrl, load_settings

tasks_app = typer.Typer(help="The background jobs `coffer serve` runs on a schedule.")


@tasks_app.command("run")
def tasks_run(
    name: Annotated[
        str | None, typer.Argument(help="one job (default: every job once)", show_default=False)
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the background jobs once, now (each bounded, as on the schedule)."""
    from coffer.server import build

    settings = load_settings(database_url)
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


__all__ = ["tasks_app"]
