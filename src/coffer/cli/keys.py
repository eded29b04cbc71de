"""API keys (`coffer keys create | list | revoke`) and user tokens (`coffer token`)."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from coffer.cli.common import DatabaseUrl, load_settings, migrated, refuse
from coffer.errors import CofferError


class KeyRole(enum.StrEnum):
    admin = "admin"
    service = "service"


keys_app = typer.Typer(
    help="API keys (admin or service): create, list, revoke.", no_args_is_help=True
)


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

    settings = load_settings(database_url)
    try:
        with migrated(settings) as database, database.unit_of_work() as session:
            made = auth.create_api_key(session, role=role.value, label=label)
    except CofferError as exc:
        raise refuse(exc) from exc
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

    settings = load_settings(database_url)
    with migrated(settings) as database, database.read() as session:
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

    settings = load_settings(database_url)
    try:
        with migrated(settings) as database, database.unit_of_work() as session:
            revoked = auth.revoke_api_key(session, key_id)
    except CofferError as exc:
        raise refuse(exc) from exc
    typer.echo(f"revoked {revoked.role} key {revoked.id} ({revoked.prefix}...)")


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

    settings = load_settings(database_url)
    if settings.env == "production" and settings.jwt_secret is None:
        # A generated secret would sign tokens the production server refuses to start without.
        typer.echo("coffer: COFFER_JWT_SECRET is required in production", err=True)
        raise typer.Exit(2)
    configured = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    try:
        with migrated(settings) as database, database.unit_of_work() as session:
            secret = auth.jwt_secret(session, configured=configured)
        issued = auth.mint_user_token(secret, user_id=user_id, ttl_s=ttl_s, now=utc_now())
    except CofferError as exc:
        raise refuse(exc) from exc
    typer.echo(f"expires at {rfc3339(issued.expires_at)}", err=True)
    typer.echo(issued.token)


__all__ = ["KeyRole", "keys_app", "token"]
