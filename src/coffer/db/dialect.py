"""The dialect's own INSERT, for `ON CONFLICT` (DO NOTHING / DO UPDATE), which the generic one
lacks. Every layer above the ledger takes it from here; the ledger, which imports nothing from
the rest of Coffer, has its twin in `coffer.ledger.repository._common.dialect_insert`."""

from __future__ import annotations

from sqlalchemy import Connection, Table
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

Insert = PgInsert | SqliteInsert


def insert(bind: Connection | Session, table: Table) -> Insert:
    """An INSERT into `table` in the dialect of `bind` (PostgreSQL or SQLite)."""
    dialect = bind.dialect if isinstance(bind, Connection) else bind.get_bind().dialect
    if dialect.name == "postgresql":
        return pg_insert(table)
    assert dialect.name == "sqlite", f"Coffer runs on PostgreSQL or SQLite, not {dialect.name}"
    return sqlite_insert(table)


__all__ = ["Insert", "insert"]
