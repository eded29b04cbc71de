"""Query filters that several lists share: transfer types, an asset code, a bounded range."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Query

from coffer.errors import ValidationFailed

TYPES_MAX = 20
TypeFilter = Annotated[
    str | None,
    Query(alias="type", max_length=200, description="one type, or several separated by commas"),
]
AssetFilter = Annotated[str | None, Query(pattern=r"^[A-Z][A-Z0-9_]{0,15}$")]


def parse_types(value: str | None, *, name: str = "type") -> list[str] | None:
    """`a,b` → ["a", "b"]; None when the filter is absent."""
    if value is None:
        return None
    types = [t.strip() for t in value.split(",") if t.strip()]
    if not types or len(types) > TYPES_MAX:
        raise ValidationFailed(
            f"{name} takes 1 to {TYPES_MAX} comma-separated values",
            fields=[{"field": f"query.{name}", "message": "bad list"}],
        )
    return types


def bounded_range(
    start: datetime | None,
    end: datetime | None,
    *,
    now: datetime,
    default_days: int = 30,
    max_days: int = 366,
) -> tuple[datetime, datetime]:
    """A statistic's range: [start, end) defaulting to the last `default_days` up to now, and
    never longer than `max_days` (its cost then stays bounded however large the books grow)."""
    stop = end if end is not None else now
    begin = start if start is not None else stop - timedelta(days=default_days)
    if stop - begin > timedelta(days=max_days):
        raise ValidationFailed(
            f"from and to may be at most {max_days} days apart",
            fields=[{"field": "query.from", "message": f"over {max_days} days before to"}],
        )
    return begin, stop
