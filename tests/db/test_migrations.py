"""The migrations make exactly the schema the code describes, on both databases."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, select

from coffer.db import Database, migrate
from coffer.db.migrate import current_revision, head_revision
from coffer.ledger.tables import chain
from coffer.server import all_metadata


def test_schema_matches_the_tables_in_code(db: Database) -> None:
    merged = MetaData()
    for part in all_metadata():
        for table in part.tables.values():
            table.to_metadata(merged)
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, merged)
    assert differences == []


def test_a_fresh_database_is_at_head_with_the_chain_row(tmp_path: Path) -> None:
    fresh = Database.connect(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert current_revision(fresh) is None
        migrate(fresh)
        migrate(fresh)  # again: a no-op
        assert current_revision(fresh) == head_revision(fresh)
        with fresh.read() as session:
            rows = session.execute(select(chain.c.id, chain.c.last_transfer_id)).all()
        assert [tuple(r) for r in rows] == [(1, 0)]
    finally:
        fresh.dispose()
