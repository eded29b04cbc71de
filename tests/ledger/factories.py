"""Plain factory functions for ledger tests."""

from __future__ import annotations

from sqlalchemy.orm import Session

from coffer import ledger
from coffer.ledger import Account, AccountFlags


def define_assets(session: Session) -> None:
    ledger.define_asset(session, code="DIAMOND", scale=0)
    ledger.define_asset(session, code="INR", scale=2)


def wallet(session: Session, owner_id: str, asset: str = "DIAMOND") -> Account:
    return ledger.open_account(
        session,
        asset=asset,
        owner_type="user",
        owner_id=owner_id,
        kind="wallet",
        flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    )


def system(session: Session, kind: str = "issuance", asset: str = "DIAMOND") -> Account:
    return ledger.open_account(
        session, asset=asset, owner_type="system", owner_id="coffer", kind=kind
    )


def fund(session: Session, account: Account, amount: int) -> ledger.Transfer:
    source = system(session, asset=account.asset)
    return ledger.transfer(
        session,
        debit_account_id=source.id,
        credit_account_id=account.id,
        amount=amount,
        type="purchase",
    )
