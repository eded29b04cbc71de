"""Delivery figures over a time range, for analytics and metrics (which sit above this package).

Each figure is defined here once, with its denominator:
- `attempts`: attempts made in [start, end) (every try, retries and resends included);
- `failed_attempts`: of those, the ones not answered 2xx (no answer at all included);
- `first_attempts`: attempts in the range that were the first of their round (a delivery's
  first try, or the first after a resend or a recovery);
- `first_attempt_rate` = first attempts answered 2xx / `first_attempts`; None when there were none.

One aggregate over `webhook_attempts` by its `attempted_at` index: the caller bounds the range.
Each attempt's `latency_ms` is in the same table, for percentiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Integer, case, func, select
from sqlalchemy.orm import Session

from coffer.outbound.tables import attempts


@dataclass(frozen=True, slots=True)
class Figures:
    attempts: int
    failed_attempts: int
    first_attempts: int
    first_attempts_succeeded: int

    @property
    def first_attempt_rate(self) -> float | None:
        return self.first_attempts_succeeded / self.first_attempts if self.first_attempts else None


def figures(session: Session, *, start: datetime, end: datetime) -> Figures:
    assert start <= end
    a = attempts.c
    succeeded = (a.status_code >= 200) & (a.status_code < 300)
    first = a.attempt_number == 1

    def count(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0).cast(Integer)

    row = session.execute(
        select(
            func.count(),
            count(~succeeded | a.status_code.is_(None)),
            count(first),
            count(first & succeeded),
        ).where(a.attempted_at >= start, a.attempted_at < end)
    ).one()
    return Figures(
        attempts=int(row[0]),
        failed_attempts=int(row[1]),
        first_attempts=int(row[2]),
        first_attempts_succeeded=int(row[3]),
    )


__all__ = ["Figures", "figures"]
