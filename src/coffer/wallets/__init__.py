"""Users, agencies and the ledger accounts they own (balances live in the ledger).

Other modules find accounts here: `wallet_account`, `earnings_account`, `agency_account`,
`platform_account`, `system_account`, `provider_account` (see `service.py`).
"""

from coffer.wallets.repository import Agency, User
from coffer.wallets.service import (
    AccountBalance,
    account_balances,
    agency_account,
    agency_of_user,
    define_assets,
    earnings_account,
    ensure_user,
    find_agency,
    find_user,
    get_agency,
    get_user,
    platform_account,
    provider_account,
    put_agency,
    put_user,
    system_account,
    user_account,
    wallet_account,
)

__all__ = [
    "AccountBalance",
    "Agency",
    "User",
    "account_balances",
    "agency_account",
    "agency_of_user",
    "define_assets",
    "earnings_account",
    "ensure_user",
    "find_agency",
    "find_user",
    "get_agency",
    "get_user",
    "platform_account",
    "provider_account",
    "put_agency",
    "put_user",
    "system_account",
    "user_account",
    "wallet_account",
]
