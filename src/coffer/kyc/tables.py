"""A user's KYC record: the latest submission and the decision on it (one row per user)."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Index, Integer, String, Table

from coffer.db.base import UTCDateTime, metadata

kyc_records = Table(
    "kyc_records",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),  # submitted | approved | rejected
    Column("full_name", String(128), nullable=False),
    Column("document_type", String(32), nullable=False),
    # Stored whole (the operator compares it with the document); shown masked to everyone else.
    Column("document_number", String(64), nullable=False),
    Column("document_front_url", String(1024), nullable=False),
    Column("document_back_url", String(1024), nullable=True),
    Column("selfie_url", String(1024), nullable=False),
    Column("address", String(256), nullable=False),
    Column("city", String(128), nullable=False),
    Column("state", String(128), nullable=False),
    Column("postal_code", String(16), nullable=False),
    Column("submissions", Integer, nullable=False),  # 1 for the first, +1 for each resubmission
    Column("submitted_at", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("decided_by", String(64), nullable=True),  # the operator's key
    Column("reason", String(500), nullable=True),  # the decision's reason (a rejection's, shown)
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("status IN ('submitted', 'approved', 'rejected')", name="status_known"),
    CheckConstraint("submissions > 0", name="submissions_positive"),
    Index("ix_kyc_records_status", "status", "submitted_at", "user_id"),
    Index("ix_kyc_records_submitted", "submitted_at", "user_id"),
)
