"""Stripe-style lists: `{"data": [...], "has_more": bool, "next_cursor": str | None}`.

`?limit=` (default 50, max 500) and `?cursor=` (opaque to clients); `from`/`to` take RFC 3339
or a plain date (a date means its midnight UTC; `to` is exclusive).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from fastapi import Query

from coffer.errors import ValidationFailed

LIMIT_DEFAULT = 50
LIMIT_MAX = 500
CURSOR_LENGTH_MAX = 512

Limit = Annotated[int, Query(ge=1, le=LIMIT_MAX, description="items per page")]
Cursor = Annotated[
    str | None, Query(max_length=CURSOR_LENGTH_MAX, description="next_cursor of the last page")
]
TimeBound = Annotated[
    str | None, Query(max_length=40, description="RFC 3339 timestamp or YYYY-MM-DD (UTC)")
]


def encode_cursor(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError) as exc:
        raise ValidationFailed(
            "cursor is not one this API gave out",
            fields=[{"field": "query.cursor", "message": "invalid cursor"}],
        ) from exc


def parse_time(value: str | None, *, name: str) -> datetime | None:
    """RFC 3339 (with a zone, or Z) or YYYY-MM-DD; always returned in UTC."""
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ValidationFailed(
            f"{name} must be an RFC 3339 timestamp or a date",
            fields=[{"field": f"query.{name}", "message": "not a timestamp or date"}],
        ) from exc
    if parsed.tzinfo is None:
        raise ValidationFailed(
            f"{name} needs a time zone (Z or an offset)",
            fields=[{"field": f"query.{name}", "message": "missing time zone"}],
        )
    return parsed.astimezone(UTC)


def time_range(
    created_from: str | None, created_to: str | None
) -> tuple[datetime | None, datetime | None]:
    start = parse_time(created_from, name="from")
    end = parse_time(created_to, name="to")
    if start is not None and end is not None and end < start:
        raise ValidationFailed(
            "to is before from", fields=[{"field": "query.to", "message": "before from"}]
        )
    return start, end


def page(data: list[Any], *, next_cursor: str | None, **extra: Any) -> dict[str, Any]:
    return {"data": data, "has_more": next_cursor is not None, "next_cursor": next_cursor, **extra}
