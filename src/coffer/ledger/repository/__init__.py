"""All of the ledger's SQL. Posting decides; this module reads and writes rows.

Writes come in sets (one statement per table per batch) so a batch of a thousand transfers costs
a handful of round trips, and a hot account's row is written once per batch. PostgreSQL gets
set statements (COPY, `unnest` of array parameters), which send a whole batch at once; SQLite
gets the same rows through `executemany`.

The statements a batch runs every time (lock the chain and the accounts, insert the transfers and
holds, update the accounts and the chain) go through the driver's own cursor rather than Core:
they are fixed text, so Core's compilation and row objects are pure overhead. On PostgreSQL a
batch costs five round trips (it cost eight):
- BEGIN and the locks travel together in psycopg's pipeline mode (one round trip);
- the transfers are written with binary COPY (two), whose rows psycopg encodes in C (about 1 µs
  a row, against 5 µs or more for the same rows as 18 array parameters);
- the accounts and the chain head are updated by one statement (one), after the holds' own
  statements in the same pipeline when there are any; then the caller's COMMIT (one);
- lists of integers travel as one comma-separated text each (`string_to_array`), which costs
  psycopg one string where an array parameter costs a Python call per element.
Driver errors are raised as SQLAlchemy's, as Core would raise them. bench/README.md has the
measurements behind each choice.

The package is split along its seams: `_common` (row shapes, conversions, driver helpers),
`accounts` (assets and accounts), `locks` (posting's reads under lock, the writer connection),
`writes` (a batch's writes, per dialect) and `reads` (everything read outside posting). Callers
use the names below, as `from coffer.ledger import repository as repo`.
"""

from coffer.ledger.repository._common import (
    AccountState,
    ChainHead,
    HoldResolution,
    TransferRow,
    account_from_mapping,
    account_from_row,
    hold_from_row,
    transfer_from_insert,
    transfer_from_row,
)
from coffer.ledger.repository.accounts import (
    accounts_by_key,
    accounts_of_owner,
    find_account,
    find_accounts,
    find_accounts_query,
    get_accounts,
    get_asset,
    insert_account_if_absent,
    insert_asset_if_absent,
    list_assets,
)
from coffer.ledger.repository.locks import (
    close_writer_connection,
    expired_open_holds,
    get_transfers,
    lock_accounts,
    lock_chain,
    lock_chain_and_accounts,
    lock_chain_and_holds,
    lock_holds,
    open_writer_connection,
    reversed_amounts,
    transfers_by_idempotency,
)
from coffer.ledger.repository.reads import (
    account_history,
    get_hold,
    last_transfer_touching,
    open_holds,
    read_chain,
    stream_account_totals,
    stream_accounts,
    stream_daily_totals,
    stream_transfers,
)
from coffer.ledger.repository.writes import (
    write_batch,
)

__all__ = [
    "AccountState",
    "ChainHead",
    "HoldResolution",
    "TransferRow",
    "account_from_mapping",
    "account_from_row",
    "account_history",
    "accounts_by_key",
    "accounts_of_owner",
    "close_writer_connection",
    "expired_open_holds",
    "find_account",
    "find_accounts",
    "find_accounts_query",
    "get_accounts",
    "get_asset",
    "get_hold",
    "get_transfers",
    "hold_from_row",
    "insert_account_if_absent",
    "insert_asset_if_absent",
    "last_transfer_touching",
    "list_assets",
    "lock_accounts",
    "lock_chain",
    "lock_chain_and_accounts",
    "lock_chain_and_holds",
    "lock_holds",
    "open_holds",
    "open_writer_connection",
    "read_chain",
    "reversed_amounts",
    "stream_account_totals",
    "stream_accounts",
    "stream_daily_totals",
    "stream_transfers",
    "transfer_from_insert",
    "transfer_from_row",
    "transfers_by_idempotency",
    "write_batch",
]
