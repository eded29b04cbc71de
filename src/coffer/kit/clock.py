"""The one clock. Tests replace it; nothing else calls datetime.now()."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(value: datetime) -> str:
    """`2026-11-23T18:42:00.123456Z`: UTC, always with the zone."""
    assert value.tzinfo is not None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
