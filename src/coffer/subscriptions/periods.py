"""Billing periods: whole months or years from an anchor, computed from the anchor each time
(never by adding to the previous end), so a 31st-of-the-month anchor does not drift to the
28th after February."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

MONTHS = {"month": 1, "year": 12}


def add_months(value: datetime, months: int) -> datetime:
    """`value` moved by whole calendar months, the day clamped to the month's length."""
    assert months >= 0
    index = value.year * 12 + (value.month - 1) + months
    year, month = divmod(index, 12)
    day = min(value.day, calendar.monthrange(year, month + 1)[1])
    return value.replace(year=year, month=month + 1, day=day)


def period_start(anchor: datetime, interval: str, index: int) -> datetime:
    """The start of period `index` (0: the first) of a subscription anchored at `anchor`."""
    return add_months(anchor, MONTHS[interval] * index)


def from_unix(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def to_unix(value: datetime) -> int:
    return int(value.timestamp())


__all__ = ["add_months", "from_unix", "period_start", "to_unix"]
