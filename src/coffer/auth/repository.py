"""All of auth's SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, or_, select, update

from coffer.auth.tables import api_keys, auth_settings
from coffer.db import dialect

LIST_LIMIT_MAX = 500


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key's record; the key itself is never stored."""

    id: str
    role: str
    prefix: str
    label: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        role=row.role,
        prefix=row.prefix,
        label=row.label,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def insert_key(
    conn: Connection,
    *,
    key_id: str,
    role: str,
    key_hash: bytes,
    prefix: str,
    label: str | None,
    now: datetime,
) -> ApiKey:
    conn.execute(
        api_keys.insert().values(
            id=key_id, role=role, key_hash=key_hash, prefix=prefix, label=label, created_at=now
        )
    )
    found = get_key(conn, key_id)
    assert found is not None
    return found


def get_key(conn: Connection, key_id: str) -> ApiKey | None:
    row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    return None if row is None else _key(row)


def find_key_by_hash(conn: Connection, key_hash: bytes) -> ApiKey | None:
    row = conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash)).first()
    return None if row is None else _key(row)


def list_keys(conn: Connection, *, limit: int) -> list[ApiKey]:
    assert 0 < limit <= LIST_LIMIT_MAX
    rows = conn.execute(
        select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id).limit(limit)
    )
    return [_key(r) for r in rows]


def role_exists(conn: Connection, role: str) -> bool:
    """True if any key with `role` was ever made (revoked ones count)."""
    return (
        conn.execute(select(api_keys.c.id).where(api_keys.c.role == role).limit(1)).first()
        is not None
    )


def revoke_key(conn: Connection, key_id: str, *, now: datetime) -> None:
    conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def touch_key(conn: Connection, key_id: str, *, now: datetime, stale_before: datetime) -> None:
    """Record a use, unless one was recorded since `stale_before` (one write per interval)."""
    conn.execute(
        update(api_keys)
        .where(
            api_keys.c.id == key_id,
            or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < stale_before),
        )
        .values(last_used_at=now)
    )


def insert_setting_if_absent(conn: Connection, *, name: str, value: str, now: datetime) -> bool:
    """True if this call stored the value; False if the name already had one."""
    result = conn.execute(
        dialect.insert(conn, auth_settings)
        .values(name=name, value=value, created_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(auth_settings.c.name)
    )
    return result.first() is not None


def get_setting(conn: Connection, name: str) -> str | None:
    value = conn.execute(
        select(auth_settings.c.value).where(auth_settings.c.name == name)
    ).scalar_one_or_none()
    return None if value is None else str(value)
