"""Idempotency-Key records: one per (principal, key), with the first answer's exact bytes."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
)

from coffer.db.base import UTCDateTime, metadata

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("scope", String(80), nullable=False),  # the principal, e.g. "user:u1", "service:key_..."
    Column("key", String(255), nullable=False),
    # SHA-256 of (method, path, query, canonical body): the same key with another request is a
    # conflict, not a replay.
    Column("fingerprint", LargeBinary(32), nullable=False),
    Column("method", String(8), nullable=False),
    Column("path", String(512), nullable=False),
    # The answer, written in the same transaction as the claim and the work it describes, so a
    # committed row always has one (the columns are nullable only between claim and answer).
    Column("status_code", SmallInteger, nullable=True),
    Column("content_type", String(128), nullable=True),
    Column("body", LargeBinary, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("scope", "key", name="uq_idempotency_keys_scope_key"),
    CheckConstraint(
        "status_code IS NULL OR (status_code >= 100 AND status_code <= 599)",
        name="status_code_range",
    ),
    Index("ix_idempotency_keys_created_at", "created_at"),
)
