"""The invariants report of DESIGN.md: the ledger's five, and the payments' sixth."""

from __future__ import annotations

from coffer import ledger
from coffer.db import Database
from coffer.payments.verify import check_payments


def verify_books(database: Database) -> ledger.VerifyReport:
    """Check every invariant inside one consistent snapshot of the database."""
    with database.snapshot() as session:
        report = ledger.verify(session)
        report.extend([check_payments(session)])
    return report
