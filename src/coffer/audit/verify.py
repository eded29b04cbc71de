"""The invariants report of DESIGN.md: the ledger's five, and the sixth for payments and escrows."""

from __future__ import annotations

from coffer import ledger
from coffer.db import Database
from coffer.escrow.verify import check_escrows
from coffer.payments.verify import check_payments


def verify_books(database: Database) -> ledger.VerifyReport:
    """Check every invariant inside one consistent snapshot of the database."""
    with database.snapshot() as session:
        report = ledger.verify(session)
        payments = check_payments(session)
        check_escrows(session, payments)
        report.extend([payments])
    return report
