"""Keyset pages and form values for the console's lists (never OFFSET: a page is a cursor)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, date, datetime, time
from typing import Any

from coffer.errors import ValidationFailed

PAGE_SIZE = 50
CURSOR_LENGTH_MAX = 512
FILTER_LENGTH_MAX = 128


def encode_cursor(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if not cursor:
        return None
    if len(cursor) > CURSOR_LENGTH_MAX:
        raise ValidationFailed("this page link is not one the console gave out")
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise ValidationFailed("this page link is not one the console gave out") from exc


def time_position(cursor: str | None) -> tuple[datetime, str] | None:
    """A (created_at, id) position from a cursor made by `next_time_cursor`."""
    value = decode_cursor(cursor)
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise ValidationFailed("this page link is not one the console gave out")
    try:
        at = datetime.fromisoformat(value[0])
    except ValueError as exc:
        raise ValidationFailed("this page link is not one the console gave out") from exc
    if at.tzinfo is None:
        raise ValidationFailed("this page link is not one the console gave out")
    return at, value[1]


def next_time_cursor(at: datetime, id_: str, has_more: bool) -> str | None:
    return encode_cursor([at.isoformat(), id_]) if has_more else None


def parse_time(value: str | None, *, name: str) -> datetime | None:
    """`YYYY-MM-DD` (midnight UTC), a `datetime-local` value or RFC 3339, in UTC."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationFailed(f"{name} is not a date or a time", field=name) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def text(value: str | None, *, name: str, length_max: int = FILTER_LENGTH_MAX) -> str | None:
    """A filter's value: stripped, None when empty, refused when too long or not printable."""
    stripped = (value or "").strip()
    if not stripped:
        return None
    if len(stripped) > length_max or not stripped.isprintable():
        raise ValidationFailed(f"{name} must be 1 to {length_max} printable characters", field=name)
    return stripped


def amount(value: str | None, *, name: str) -> int | None:
    """An amount in minor units typed into a form: a whole positive number, or None."""
    stripped = (value or "").strip()
    if not stripped:
        return None
    if not stripped.isdigit() or len(stripped) > 18 or int(stripped) <= 0:
        raise ValidationFailed(f"{name} must be a whole number of minor units above 0", field=name)
    return int(stripped)


REASON_LENGTH_MAX = 255  # the shortest the services take (a payout retry's)


def reason(form: dict[str, str]) -> str:
    """The operator's reason, which every console action asks for and the audit log keeps."""
    stripped = (form.get("reason") or "").strip()
    if not stripped or len(stripped) > REASON_LENGTH_MAX:
        raise ValidationFailed(
            f"a reason of 1 to {REASON_LENGTH_MAX} characters is needed", field="reason"
        )
    return stripped
