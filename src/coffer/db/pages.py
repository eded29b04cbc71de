"""Keyset pages, newest first, on (a time column, the id): never OFFSET (STYLE habit 7)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, Row, Select
from sqlalchemy.orm import Session

Filter = tuple[Column[Any], object]


def newest_first(
    session: Session,
    query: Select[Any],
    *,
    at: Column[Any],
    id_: Column[Any],
    limit: int,
    before: tuple[datetime, str] | None,
    equal: Iterable[Filter] = (),
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> tuple[list[Row[Any]], bool]:
    """`query` filtered (each `(column, value)` of `equal` whose value is not None; `at` within
    [created_from, created_to)), after the keyset position `before`, newest first; returns
    (at most `limit` rows, whether there are more)."""
    conditions: list[ColumnElement[bool]] = [c == v for c, v in equal if v is not None]
    if created_from is not None:
        conditions.append(at >= created_from)
    if created_to is not None:
        conditions.append(at < created_to)
    if before is not None:
        position, last_id = before
        conditions.append((at < position) | ((at == position) & (id_ < last_id)))
    rows = session.execute(
        query.where(*conditions).order_by(at.desc(), id_.desc()).limit(limit + 1)
    ).all()
    return list(rows[:limit]), len(rows) > limit


__all__ = ["newest_first"]
