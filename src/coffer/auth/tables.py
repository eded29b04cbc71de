"""API keys (stored only as a hash) and the auth settings Coffer keeps for itself."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, LargeBinary, String, Table, Text

from coffer.db.base import UTCDateTime, metadata

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),  # key_... (public, for listing and revoking)
    Column("role", String(16), nullable=False),
    # SHA-256 of the whole key. The key itself is never stored (auth/keys.py says why a fast
    # hash is the right one here).
    Column("key_hash", LargeBinary(32), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),  # the key's first characters, for display
    Column("label", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    CheckConstraint("role IN ('admin', 'service')", name="role_known"),
)

# Values Coffer generates for itself once and must keep across restarts: the JWT signing secret
# when COFFER_JWT_SECRET is unset, the mock provider's secret when COFFER_MOCK_WEBHOOK_SECRET is
# unset (development only), and the marker that the first admin key has been issued.
auth_settings = Table(
    "auth_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
