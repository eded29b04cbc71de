"""Users, agencies and the ledger accounts they own (balances live in the ledger).

Other modules find accounts here: `wallet_account`, `earnings_account`, `agency_account`,
`platform_account`, `system_account`, `provider_account` (see `service.py`). Spenders call
`check_may_spend` (403 `account_frozen` for a wallet an operator froze).
"""

from coffer.wallets.repository import Agency, User
from coffer.wallets.service import (
    AccountBalance,
    account_balances,
    agency_account,
    agency_of_user,
    check_may_spend,
    define_assets,
    earnings_account,
    ensure_may_spend,
    ensure_user,
    find_agency,
    find_user,
    get_agency,
    get_user,
    platform_account,
    provider_account,
    put_agency,
    put_user,
    set_frozen,
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
    "check_may_spend",
    "define_assets",
    "earnings_account",
    "ensure_may_spend",
    "ensure_user",
    "find_agency",
    "find_user",
    "get_agency",
    "get_user",
    "platform_account",
    "provider_account",
    "put_agency",
    "put_user",
    "set_frozen",
    "system_account",
    "user_account",
    "wallet_account",
]
