"""One user as an operator sees them: their ledger, orders, gifts and payouts, a summary, and
their accounts as they stood at any past instant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from coffer import kyc, ledger, wallets
from coffer.audit import transactions
from coffer.gifts import service as gifts
from coffer.gifts.service import Gift
from coffer.ledger import Account
from coffer.payments import service as payments
from coffer.payments.service import PaymentOrder
from coffer.payouts import records as payouts
from coffer.payouts.records import Payout
from coffer.wallets import User, history

RECENT_MAX = 20  # of each kind on the overview; the lists page on with their own endpoints


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    """The user's DIAMOND figures, all from running totals. `net_flow` is what came in
    (purchased + gifts received) less what went out (gifts sent + withdrawn)."""

    current_balance: int
    total_purchased: int
    total_gifts_sent: int
    total_gifts_received: int
    total_withdrawn: int

    @property
    def net_flow(self) -> int:
        return (
            self.total_purchased
            + self.total_gifts_received
            - self.total_gifts_sent
            - self.total_withdrawn
        )


@dataclass(frozen=True, slots=True)
class UserLedger:
    user: User
    kyc_status: str
    accounts: list[Account]
    transactions: transactions.TransactionPage
    payment_orders: list[PaymentOrder]
    gifts_sent: list[Gift]
    gifts_received: list[Gift]
    payouts: list[Payout]
    summary: LedgerSummary


def user_ledger(session: Session, user_id: str) -> UserLedger:
    """Raises NotFound for an unknown user."""
    user = wallets.get_user(session, user_id)
    balance = history.balance(session, user_id)
    wallet = next(
        (a for a in balance.accounts if a.kind == "wallet" and a.asset == "DIAMOND"), None
    )
    totals = balance.totals
    orders, _ = payments.list_orders(session, limit=RECENT_MAX, user_id=user_id)
    sent, _ = gifts.list_gifts(session, limit=RECENT_MAX, sender_id=user_id)
    received, _ = gifts.list_gifts(session, limit=RECENT_MAX, receiver_id=user_id)
    paid_out, _ = payouts.list_payouts(session, limit=RECENT_MAX, user_id=user_id)
    return UserLedger(
        user=user,
        kyc_status=kyc.kyc_status(session, user_id),
        accounts=balance.accounts,
        transactions=transactions.search(
            session, transactions.TransactionFilters(user_id=user_id), limit=RECENT_MAX
        ),
        payment_orders=orders,
        gifts_sent=sent,
        gifts_received=received,
        payouts=paid_out,
        summary=LedgerSummary(
            current_balance=wallet.balance if wallet is not None else 0,
            total_purchased=totals.purchased,
            total_gifts_sent=totals.gifts_sent,
            total_gifts_received=totals.gifts_received,
            total_withdrawn=totals.withdrawn,
        ),
    )


@dataclass(frozen=True, slots=True)
class BalanceAt:
    account: Account
    balance: int  # posted, credit-normal, just after the last transfer at or before `at`


def balances_at(session: Session, user_id: str, at: datetime) -> list[BalanceAt]:
    """Each of the user's accounts as it stood at `at`: one index probe per account side."""
    wallets.get_user(session, user_id)
    accounts = ledger.accounts_of_owner(session, owner_type="user", owner_id=user_id)
    return [BalanceAt(a, ledger.balance_at(session, account_id=a.id, at=at)) for a in accounts]
