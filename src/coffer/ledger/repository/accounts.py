"""Assets and accounts: the cold paths (made once, read by id or owner)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Connection, select, tuple_

from coffer.ledger.repository._common import (
    _chunks,
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
    columns = (accounts.c.asset, accounts.c.owner_type, accounts.c.owner_id, accounts.c.kind)
    rows = conn.execute(select(accounts).where(tuple_(*columns).in_(list(keys))))
    found = {}
    for row in rows:
        account = account_from_row(row)
        found[(account.asset, account.owner_type, account.owner_id, account.kind)] = account
    return found


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
    rows = conn.execute(
        select(accounts)
        .where(accounts.c.owner_type == owner_type, accounts.c.owner_id == owner_id)
        .order_by(accounts.c.id)
    )
    return [account_from_row(r) for r in rows]
