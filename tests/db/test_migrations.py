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


def test_the_running_totals_migration_fills_them_from_the_transfers(db: Database) -> None:
    """A book made before 0012: its totals are rebuilt from its transfers, and verify agrees
    (each database computes the UTC day in its own SQL)."""
    from alembic import command

    from coffer import ledger
    from coffer.db.migrate import alembic_config
    from tests.ledger.factories import define_assets, fund, system, wallet

    book = db
    try:
        with book.unit_of_work() as s:
            define_assets(s)
            alice, bob = wallet(s, "alice"), wallet(s, "bob")
            fund(s, alice, 500)
            ledger.transfer(
                s, debit_account_id=alice.id, credit_account_id=bob.id, amount=70, type="gift"
            )
            hold = ledger.create_hold(
                s, debit_account_id=alice.id, credit_account_id=bob.id, amount=5, type="call"
            )
            ledger.void_hold(s, hold_id=hold.id)
            system(s)
        command.downgrade(alembic_config(book), "0011")  # as the book stood before the totals
        migrate(book)
        with book.snapshot() as s:
            report = ledger.verify(s)
            assert report.ok, report.as_dict()
            totals = ledger.totals_by_type(s, account_ids=[alice.id])
        assert {(t.type, t.debits, t.credits) for t in totals} == {
            ("purchase", 0, 500),
            ("gift", 70, 0),
        }
    finally:
        migrate(book)  # the shared database goes back to head whatever happened
