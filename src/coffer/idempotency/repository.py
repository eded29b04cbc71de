"""All of idempotency's SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, select, update

from coffer.db import dialect
from coffer.idempotency.tables import idempotency_keys
from coffer.ledger import InvariantViolated


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    id: int
    scope: str
    key: str
    fingerprint: bytes
    method: str
    path: str
    status_code: int | None
    content_type: str | None
    body: bytes | None
    created_at: datetime


def _record(row: Row[Any]) -> IdempotencyRecord:
    return IdempotencyRecord(
        id=row.id,
        scope=row.scope,
        key=row.key,
        fingerprint=bytes(row.fingerprint),
        method=row.method,
        path=row.path,
        status_code=row.status_code,
        content_type=row.content_type,
        body=None if row.body is None else bytes(row.body),
        created_at=row.created_at,
    )


def find(conn: Connection, *, scope: str, key: str) -> IdempotencyRecord | None:
    row = conn.execute(
        select(idempotency_keys).where(
            idempotency_keys.c.scope == scope, idempotency_keys.c.key == key
        )
    ).first()
    return None if row is None else _record(row)


def insert_if_absent(
    conn: Connection,
    *,
    scope: str,
    key: str,
    fingerprint: bytes,
    method: str,
    path: str,
    now: datetime,
) -> bool:
    """True if this call claimed (scope, key).

    On PostgreSQL a concurrent claimer of the same key waits here until the first transaction
    ends: if it committed, this sees the conflict (False); if it rolled back, this claims it.
    On SQLite the write lock taken at BEGIN IMMEDIATE serialises the two before they get here.
    """
    result = conn.execute(
        dialect.insert(conn, idempotency_keys)
        .values(
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            method=method,
            path=path,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["scope", "key"])
        # RETURNING says whether a row went in: rowcount is -1 on PostgreSQL when SQLAlchemy
        # adds its own RETURNING for the generated id.
        .returning(idempotency_keys.c.id)
    )
    return result.first() is not None


def insert_answered(
    conn: Connection,
    *,
    scope: str,
    key: str,
    fingerprint: bytes,
    method: str,
    path: str,
    status_code: int,
    content_type: str,
    body: bytes,
    now: datetime,
) -> None:
    """Claim and answer in one statement (the writer's units: the claim was checked under the
    ledger's write lock, so no other writer can hold it; a unique violation means a bug)."""
    conn.execute(
        idempotency_keys.insert().values(
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            method=method,
            path=path,
            status_code=status_code,
            content_type=content_type,
            body=body,
            created_at=now,
        )
    )


def set_response(
    conn: Connection,
    *,
    scope: str,
    key: str,
    status_code: int,
    content_type: str,
    body: bytes,
) -> None:
    result = conn.execute(
        update(idempotency_keys)
        .where(
            idempotency_keys.c.scope == scope,
            idempotency_keys.c.key == key,
            idempotency_keys.c.status_code.is_(None),
        )
        .values(status_code=status_code, content_type=content_type, body=body)
    )
    if result.rowcount != 1:  # paired check: the answer is stored once, by the claimer
        raise InvariantViolated(f"the answer to {scope} {key!r} was stored {result.rowcount} times")


def delete_older_than(conn: Connection, *, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` records made before `cutoff`, oldest first; how many went."""
    ids = (
        select(idempotency_keys.c.id)
        .where(idempotency_keys.c.created_at < cutoff)
        .order_by(idempotency_keys.c.created_at)
        .limit(limit)
    )
    result = conn.execute(delete(idempotency_keys).where(idempotency_keys.c.id.in_(ids)))
    return int(result.rowcount)
