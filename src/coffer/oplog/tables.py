"""Operator actions (refunds, KYC decisions, freezes, rates, agencies), append only."""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table, Text, text

from coffer.db.base import UTCDateTime, metadata

operator_actions = Table(
    "operator_actions",
    metadata,
    Column("id", String(32), primary_key=True),  # act_... (time-ordered)
    # The API key that acted (`key_...`), or `cli`/`system` for actions taken outside the API.
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),  # e.g. kyc.approve, user.freeze
    Column("subject_type", String(32), nullable=False),  # user, payment_order, call_rate...
    Column("subject_id", String(128), nullable=False),
    Column("reason", String(500), nullable=True),
    Column("details", Text, nullable=False, server_default=text("'{}'")),  # JSON
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_operator_actions_created", "created_at", "id"),
    Index("ix_operator_actions_actor", "actor", "created_at"),
    Index("ix_operator_actions_action", "action", "created_at"),
    Index("ix_operator_actions_subject", "subject_type", "subject_id"),
)
