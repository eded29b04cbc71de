"""All of wallets' SQL (users and agencies; balances are the ledger's)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Select, bindparam, select, update

from coffer.db import dialect
from coffer.ledger import InvariantViolated
from coffer.wallets.tables import agencies, users


@dataclass(frozen=True, slots=True)
class User:
    id: str
    display_name: str | None
    agency_id: str | None
    created_at: datetime
    updated_at: datetime
    frozen_at: datetime | None = None
    frozen_reason: str | None = None
    frozen_by: str | None = None

    @property
    def frozen(self) -> bool:
        return self.frozen_at is not None


@dataclass(frozen=True, slots=True)
class Agency:
    id: str
    name: str
    commission_bps: int
    created_at: datetime
    updated_at: datetime


def _user(row: Row[Any]) -> User:
    return user_from_mapping(row._mapping)


def user_from_mapping(m: Mapping[Any, Any]) -> User:
    """A user from its row's columns by name (a Row's `_mapping`, or a dict of them)."""
    return User(
        id=m["id"],
        display_name=m["display_name"],
        agency_id=m["agency_id"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        frozen_at=m["frozen_at"],
        frozen_reason=m["frozen_reason"],
        frozen_by=m["frozen_by"],
    )


def _agency(row: Row[Any]) -> Agency:
    return agency_from_mapping(row._mapping)


def agency_from_mapping(m: Mapping[Any, Any]) -> Agency:
    return Agency(
        id=m["id"],
        name=m["name"],
        commission_bps=m["commission_bps"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def find_user(conn: Connection, user_id: str) -> User | None:
    row = conn.execute(select(users).where(users.c.id == user_id)).first()
    return None if row is None else _user(row)


def find_users(conn: Connection, user_ids: list[str]) -> dict[str, User]:
    query = users_query(user_ids)
    if query is None:
        rows = conn.execute(select(users).where(users.c.id.in_(user_ids)))
    else:  # the hot case (a gift's two parties): a statement built and compiled once
        rows = conn.execute(*query)
    return {row.id: _user(row) for row in rows}


def users_query(user_ids: list[str]) -> tuple[Select[Any], dict[str, str]] | None:
    """`find_users`' statement (built once per count) and parameters for a few ids, for a
    caller that runs it on a connection of its own; None for more than a few."""
    if not 0 < len(user_ids) <= _PREBUILT_IDS_MAX:
        return None
    return _users_by_id(len(user_ids)), {f"id{i}": user_id for i, user_id in enumerate(user_ids)}


_PREBUILT_IDS_MAX = 8


@functools.cache
def _users_by_id(count: int) -> Select[Any]:
    return select(users).where(users.c.id.in_([bindparam(f"id{i}") for i in range(count)]))


def insert_user_if_absent(conn: Connection, user_id: str, *, now: datetime) -> bool:
    """True if this call made the user; concurrent makers of one user both succeed."""
    result = conn.execute(
        dialect.insert(conn, users)
        .values(id=user_id, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(users.c.id)
    )
    return result.first() is not None


def update_user(
    conn: Connection,
    user_id: str,
    *,
    display_name: str | None,
    agency_id: str | None,
    now: datetime,
) -> None:
    result = conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(display_name=display_name, agency_id=agency_id, updated_at=now)
    )
    if result.rowcount != 1:
        raise InvariantViolated(f"user {user_id} was updated {result.rowcount} times")


def set_frozen(
    conn: Connection,
    user_id: str,
    *,
    frozen: bool,
    reason: str | None,
    actor: str | None,
    now: datetime,
) -> bool:
    """Freeze or unfreeze, guarded on the current state; False if it was already so."""
    column = users.c.frozen_at
    result = conn.execute(
        update(users)
        .where(users.c.id == user_id, column.is_(None) if frozen else column.is_not(None))
        .values(
            frozen_at=now if frozen else None,
            frozen_reason=reason if frozen else None,
            frozen_by=actor if frozen else None,
            updated_at=now,
        )
    )
    if result.rowcount > 1:
        raise InvariantViolated(f"user {user_id} was frozen {result.rowcount} times")
    return result.rowcount == 1


def find_agency(conn: Connection, agency_id: str) -> Agency | None:
    row = conn.execute(*agency_query(agency_id)).first()
    return None if row is None else _agency(row)


def agency_query(agency_id: str) -> tuple[Select[Any], dict[str, str]]:
    """`find_agency`'s statement (built once) and parameters."""
    return _AGENCY_BY_ID, {"agency_id": agency_id}


_AGENCY_BY_ID = select(agencies).where(agencies.c.id == bindparam("agency_id"))


def upsert_agency(
    conn: Connection, agency_id: str, *, name: str, commission_bps: int, now: datetime
) -> None:
    statement = dialect.insert(conn, agencies)
    conn.execute(
        statement.values(
            id=agency_id, name=name, commission_bps=commission_bps, created_at=now, updated_at=now
        ).on_conflict_do_update(
            index_elements=["id"],
            set_={"name": name, "commission_bps": commission_bps, "updated_at": now},
        )
    )
