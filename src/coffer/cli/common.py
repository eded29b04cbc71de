"""What the `coffer` commands share: the settings (refused with the reason, never the value),
the --database-url option, a migrated database, and how a refusal is shown."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from coffer.config import ConfigError, Settings
from coffer.errors import CofferError

if TYPE_CHECKING:
    from coffer.db import Database


def load_settings(database_url: str | None = None) -> Settings:
    """The settings, with `database_url` over COFFER_DATABASE_URL; exit 2 when they are bad."""
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


@contextlib.contextmanager
def migrated(settings: Settings) -> Iterator[Database]:
    """The database, brought up to date first (a fresh one works without `coffer migrate`)."""
    from coffer.db import Database
    from coffer.db import migrate as run_migrations

    database = Database.connect(settings.database_url)
    try:
        run_migrations(database)
        yield database
    finally:
        database.dispose()


def refuse(exc: CofferError) -> typer.Exit:
    """Say why a command was refused; the caller raises the exit (status 2)."""
    typer.echo(f"coffer: {exc.message}", err=True)
    return typer.Exit(2)


__all__ = ["DatabaseUrl", "load_settings", "migrated", "refuse"]
