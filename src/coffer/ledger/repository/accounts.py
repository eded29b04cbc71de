"""Assets and accounts: the cold paths (made once, read by id or owner)."""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, select, tuple_

from coffer.ledger.repository._common import (
    _chunks,
    account_from_mapping,
    account_from_row,
    dialect_insert,
)
from coffer.ledger.tables import (
    accounts,
    assets,
)
from coffer.ledger.types import Account, Asset

# ---------------------------------------------------------------------------------------------
# Assets and accounts (cold paths)


def get_asset(conn: Connection, code: str) -> Asset | None:
    row = conn.execute(select(assets.c.code, assets.c.scale).where(assets.c.code == code)).first()
    return None if row is None else Asset(code=row.code, scale=row.scale)


def list_assets(conn: Connection) -> list[Asset]:
    rows = conn.execute(select(assets.c.code, assets.c.scale).order_by(assets.c.code))
    return [Asset(code=r.code, scale=r.scale) for r in rows]


def find_account(
    conn: Connection, *, asset: str, owner_type: str, owner_id: str, kind: str
) -> Account | None:
    row = conn.execute(
        select(accounts).where(
            accounts.c.asset == asset,
            accounts.c.owner_type == owner_type,
            accounts.c.owner_id == owner_id,
            accounts.c.kind == kind,
        )
    ).first()
    return None if row is None else account_from_row(row)


AccountKey = tuple[str, str, str, str]  # (asset, owner_type, owner_id, kind)


def find_accounts(conn: Connection, keys: Collection[AccountKey]) -> dict[AccountKey, Account]:
    """The accounts that exist among `keys`, in one query."""
    if not keys:
        return {}
    query = find_accounts_query(keys)
    if query is None:
        rows = conn.execute(select(accounts).where(tuple_(*_KEY_COLUMNS).in_(list(keys))))
    else:  # the hot case (a gift's three or four accounts): built and compiled once
        rows = conn.execute(*query)
    return accounts_by_key(row._mapping for row in rows)


def find_accounts_query(
    keys: Collection[AccountKey],
) -> tuple[Select[Any], dict[str, str]] | None:
    """`find_accounts`' statement (built once per count) and parameters for a few keys, for a
    caller that runs it on a connection of its own; None for more than a few."""
    if not 0 < len(keys) <= _PREBUILT_KEYS_MAX:
        return None
    params = {f"k{i}_{j}": part for i, key in enumerate(keys) for j, part in enumerate(key)}
    return _accounts_by_key(len(keys)), params


def accounts_by_key(rows: Iterable[Mapping[Any, Any]]) -> dict[AccountKey, Account]:
    """Account rows (by column name) by their (asset, owner_type, owner_id, kind)."""
    found = {}
    for row in rows:
        account = account_from_mapping(row)
        found[(account.asset, account.owner_type, account.owner_id, account.kind)] = account
    return found


_KEY_COLUMNS = (accounts.c.asset, accounts.c.owner_type, accounts.c.owner_id, accounts.c.kind)
_PREBUILT_KEYS_MAX = 8


@functools.cache
def _accounts_by_key(count: int) -> Select[Any]:
    keys = [tuple_(*(bindparam(f"k{i}_{j}") for j in range(4))) for i in range(count)]
    return select(accounts).where(tuple_(*_KEY_COLUMNS).in_(keys))


def insert_account_if_absent(
    conn: Connection,
    *,
    asset: str,
    owner_type: str,
    owner_id: str,
    kind: str,
    flags: int,
    now: datetime,
) -> None:
    """Insert the account unless it exists; concurrent openers of one account both succeed."""
    conn.execute(
        dialect_insert(conn, accounts)
        .values(
            asset=asset,
            owner_type=owner_type,
            owner_id=owner_id,
            kind=kind,
            flags=flags,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["asset", "owner_type", "owner_id", "kind"])
    )


def insert_asset_if_absent(conn: Connection, *, code: str, scale: int, now: datetime) -> None:
    conn.execute(
        dialect_insert(conn, assets)
        .values(code=code, scale=scale, created_at=now)
        .on_conflict_do_nothing(index_elements=["code"])
    )


def get_accounts(conn: Connection, account_ids: Collection[int]) -> dict[int, Account]:
    found: dict[int, Account] = {}
    for chunk in _chunks(sorted(account_ids)):
        for row in conn.execute(select(accounts).where(accounts.c.id.in_(chunk))):
            found[row.id] = account_from_row(row)
    return found


def accounts_of_owner(conn: Connection, *, owner_type: str, owner_id: str) -> list[Account]:
    rows = conn.execute(_OWNER_ACCOUNTS, {"owner_type": owner_type, "owner_id": owner_id})
    return [account_from_row(r) for r in rows]


# Built once (a top-up's answer reads it inside the writer's batch, a statement per page).
_OWNER_ACCOUNTS = (
    select(accounts)
    .where(
        accounts.c.owner_type == bindparam("owner_type"),
        accounts.c.owner_id == bindparam("owner_id"),
    )
    .order_by(accounts.c.id)
)
