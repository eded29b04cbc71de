"""The invariants report of DESIGN.md: the ledger's five, and the payments' sixth."""

from __future__ import annotations

from coffer import ledger
from coffer.db import Database


def verify_books(database: Database) -> ledger.VerifyReport:
    """Check every invariant inside one consistent snapshot of the database."""
    with database.snapshot() as session:
        return ledger.verify(session)
