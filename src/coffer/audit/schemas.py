"""The operators' read models as JSON: transactions, a user's ledger, balances at an instant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from coffer.audit import transactions
from coffer.audit.users import BalanceAt, UserLedger
from coffer.gifts.schemas import GiftOut
from coffer.payments.schemas import OrderOut
from coffer.payouts.schemas import PayoutOut
from coffer.wallets.schemas import AccountOut, UserOut
from coffer.wallets.service import AccountBalance


class SideOut(BaseModel):
    account_id: int
    owner_type: str
    owner_id: str
    kind: str
    balance_after: int


class TransactionOut(BaseModel):
    id: int
    group_id: int
    type: str
    status: str  # posted, pending, voided or expired
    phase: str
    asset: str
    amount: int  # minor units
    debit: SideOut
    credit: SideOut
    pending_id: int | None
    reversal_of: int | None
    metadata: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, t: transactions.Transaction) -> TransactionOut:
        return cls(
            id=t.id,
            group_id=t.group_id,
            type=t.type,
            status=t.status,
            phase=t.phase,
            asset=t.asset,
            amount=t.amount,
            debit=SideOut.model_validate(t.debit, from_attributes=True),
            credit=SideOut.model_validate(t.credit, from_attributes=True),
            pending_id=t.pending_id,
            reversal_of=t.reversal_of,
            metadata=t.metadata,
            created_at=t.created_at,
        )


class SummaryLineOut(BaseModel):
    asset: str
    type: str
    status: str
    count: int
    sum: int = Field(description="the amounts moved, in the asset's minor units")


class TransactionPageOut(BaseModel):
    data: list[TransactionOut]
    has_more: bool
    next_cursor: str | None


class LedgerListsOut(BaseModel):
    transactions: TransactionPageOut
    payment_orders: list[OrderOut]
    gifts_sent: list[GiftOut]
    gifts_received: list[GiftOut]
    payouts: list[PayoutOut]


class LedgerSummaryOut(BaseModel):
    current_balance: int
    total_purchased: int
    total_gifts_sent: int
    total_gifts_received: int
    total_withdrawn: int
    net_flow: int


class UserLedgerOut(BaseModel):
    user: UserOut
    accounts: list[AccountOut]
    ledger: LedgerListsOut
    summary: LedgerSummaryOut

    @classmethod
    def of(cls, view: UserLedger, *, next_cursor: str | None) -> UserLedgerOut:
        return cls(
            user=UserOut.of(view.user, kyc_status=view.kyc_status, admin=True),
            accounts=[AccountOut.of(AccountBalance.of(a)) for a in view.accounts],
            ledger=LedgerListsOut(
                transactions=TransactionPageOut(
                    data=[TransactionOut.of(t) for t in view.transactions.items],
                    has_more=next_cursor is not None,
                    next_cursor=next_cursor,
                ),
                payment_orders=[OrderOut.of(o, with_checkout=False) for o in view.payment_orders],
                gifts_sent=[GiftOut.of(g) for g in view.gifts_sent],
                gifts_received=[GiftOut.of(g) for g in view.gifts_received],
                payouts=[PayoutOut.of(p) for p in view.payouts],
            ),
            summary=LedgerSummaryOut.model_validate(view.summary, from_attributes=True),
        )


class BalanceAtOut(BaseModel):
    account_id: int
    asset: str
    kind: str
    balance: int = Field(description="posted balance in minor units just after `at`")


class BalancesAtOut(BaseModel):
    user_id: str
    at: datetime
    accounts: list[BalanceAtOut]

    @classmethod
    def of(cls, user_id: str, at: datetime, found: list[BalanceAt]) -> BalancesAtOut:
        return cls(
            user_id=user_id,
            at=at,
            accounts=[
                BalanceAtOut(
                    account_id=b.account.id,
                    asset=b.account.asset,
                    kind=b.account.kind,
                    balance=b.balance,
                )
                for b in found
            ],
        )
