"""Alembic environment. The engine comes from `coffer.db.migrate`, never from a file."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator

config = context.config
engine = config.attributes["engine"]
target_metadata = config.attributes.get("target_metadata")


def render_item(kind: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Migrations never import application code: a type of ours is written as the plain SQL
    # type it stands for, so an old migration keeps working when the code moves on.
    if kind == "type" and isinstance(obj, TypeDecorator) and isinstance(obj.impl, DateTime):
        return "sa.DateTime(timezone=True)"
    return False


with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_item,
        compare_type=True,
        transaction_per_migration=False,
    )
    context.run_migrations()
