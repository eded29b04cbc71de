"""Alert states: one row per kind of threshold alert, so it fires once per crossing."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Float, Integer, String, Table, text

from coffer.db.base import UTCDateTime, metadata

# `firing` from the run that saw the figure cross below its threshold until a run sees it back
# above: an alert is raised only on the move ok -> firing. A kind with no row is `ok`.
alert_states = Table(
    "alert_states",
    metadata,
    Column("kind", String(64), primary_key=True),  # e.g. payments.success_rate
    Column("state", String(16), nullable=False),  # ok | firing
    Column("changed_at", UTCDateTime, nullable=False),
    Column("value", Float, nullable=True),  # the figure at the change (a rate, 0..1)
    Column("attempts", Integer, nullable=False, server_default=text("0")),  # its denominator
    CheckConstraint("state IN ('ok', 'firing')", name="state_known"),
)
