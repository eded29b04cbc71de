"""Invariant 6, for escrows: what each escrow's account holds is what was paid into it less
what was released and refunded, and nothing is held for an escrow that was never paid."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from coffer import ledger
from coffer.escrow.tables import escrows

PAGE_SIZE = 500


def check_escrows(session: Session, check: ledger.Check) -> None:
    """Add what is wrong with the escrows to invariant 6's `check` (the payments' own)."""
    after = ""
    while True:
        rows = session.execute(
            select(escrows).where(escrows.c.id > after).order_by(escrows.c.id).limit(PAGE_SIZE)
        ).all()
        if not rows:
            return
        after = rows[-1].id
        accounts = ledger.get_accounts(
            session, [r.account_id for r in rows if r.account_id is not None]
        )
        for row in rows:
            if row.account_id is None:
                if row.status != "pending":
                    check.fail(f"escrow {row.id} is {row.status} but was never funded")
                continue
            account = accounts.get(row.account_id)
            left = row.amount - row.released_amount - row.refunded_amount
            if account is None or account.owner_id != row.id:
                check.fail(f"escrow {row.id} names an account that is not its own")
            elif account.balance != left or account.debits_pending:
                check.fail(
                    f"escrow {row.id} should hold {left} but its account has {account.balance}"
                )
