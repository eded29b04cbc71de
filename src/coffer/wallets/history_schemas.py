"""What the API gives for a wallet's balance, statement and summary (minor units throughout)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from coffer.ledger import Account
from coffer.wallets.history import Balance, Statement, Summary, Totals
from coffer.wallets.schemas import AccountOut
from coffer.wallets.service import AccountBalance


class TotalsOut(BaseModel):
    purchased: int
    gifts_sent: int
    gifts_received: int
    earned: int
    withdrawn: int

    @classmethod
    def of(cls, totals: Totals) -> TotalsOut:
        return cls(
            purchased=totals.purchased,
            gifts_sent=totals.gifts_sent,
            gifts_received=totals.gifts_received,
            earned=totals.earned,
            withdrawn=totals.withdrawn,
        )


class BalanceOut(BaseModel):
    user_id: str
    accounts: list[AccountOut]
    totals: TotalsOut

    @classmethod
    def of(cls, balance: Balance) -> BalanceOut:
        return cls(
            user_id=balance.user_id,
            accounts=[AccountOut.of(AccountBalance.of(a)) for a in balance.accounts],
            totals=TotalsOut.of(balance.totals),
        )


class AccountsOut(BaseModel):
    """The user's wallet and earnings accounts as their rows stand (no totals: those sum the
    history, and an answer built inside the writer's commit reads rows only)."""

    user_id: str
    accounts: list[AccountOut]

    @classmethod
    def of(cls, user_id: str, accounts: list[Account]) -> AccountsOut:
        return cls(
            user_id=user_id, accounts=[AccountOut.of(AccountBalance.of(a)) for a in accounts]
        )


class EntryOut(BaseModel):
    id: str
    transfer_id: int
    account_kind: str
    type: str
    status: str
    asset: str
    amount: int  # signed: + into this account, - out of it
    balance_after: int
    counterparty_id: str
    description: str
    metadata: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, line: Statement) -> EntryOut:
        return cls(
            id=line.id,
            transfer_id=line.transfer_id,
            account_kind=line.account_kind,
            type=line.type,
            status=line.status,
            asset=line.asset,
            amount=line.amount,
            balance_after=line.balance_after,
            counterparty_id=line.counterparty_id,
            description=line.description,
            metadata=line.metadata,
            created_at=line.created_at,
        )


class EntryPageOut(BaseModel):
    data: list[EntryOut]
    has_more: bool
    next_cursor: str | None


class TypeSummaryOut(BaseModel):
    asset: str
    type: str
    credits: int
    credit_count: int
    debits: int
    debit_count: int


class AssetTotalsOut(BaseModel):
    asset: str
    credits: int
    debits: int
    net: int


class SummaryOut(BaseModel):
    user_id: str
    from_: datetime | None = Field(default=None, serialization_alias="from")
    to: datetime | None = None
    by_type: list[TypeSummaryOut]
    totals: list[AssetTotalsOut]

    @classmethod
    def of(
        cls, user_id: str, summary: Summary, start: datetime | None, end: datetime | None
    ) -> SummaryOut:
        assets = sorted({item.asset for item in summary.items})
        totals = []
        for asset in assets:
            credits, debits = summary.total(asset)
            totals.append(
                AssetTotalsOut(asset=asset, credits=credits, debits=debits, net=credits - debits)
            )
        return cls(
            user_id=user_id,
            from_=start,
            to=end,
            by_type=[
                TypeSummaryOut(
                    asset=i.asset,
                    type=i.type,
                    credits=i.credits,
                    credit_count=i.credit_count,
                    debits=i.debits,
                    debit_count=i.debit_count,
                )
                for i in summary.items
            ],
            totals=totals,
        )
