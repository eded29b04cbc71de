"""Payment outcomes over a recent window, for `GET /metrics` (which sits above this package).

`outcomes` counts the orders created in [start, end) that reached an outcome: `succeeded`
(refunded ones included: they were paid) and `failed`. Orders still `created` or `pending`, and
`cancelled` ones (abandoned checkouts), have no outcome and are left out of both, so the success
rate is succeeded / (succeeded + failed). One aggregate over the `(status, created_at)` index,
a range scan per status: the caller bounds the window (an hour, say), never the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from coffer.payments.tables import payment_orders

SUCCEEDED_STATUSES = ("succeeded", "partially_refunded", "refunded")
FAILED_STATUSES = ("failed",)


@dataclass(frozen=True, slots=True)
class Outcomes:
    succeeded: int
    failed: int

    @property
    def success_rate(self) -> float | None:
        """0..1; None when no order in the window reached an outcome."""
        total = self.succeeded + self.failed
        return self.succeeded / total if total else None


def outcomes(session: Session, *, start: datetime, end: datetime) -> Outcomes:
    assert start <= end
    o = payment_orders.c
    rows = session.execute(
        select(o.status, func.count())
        .where(
            o.status.in_(SUCCEEDED_STATUSES + FAILED_STATUSES),
            o.created_at >= start,
            o.created_at < end,
        )
        .group_by(o.status)
    ).all()
    counts = {status: int(count) for status, count in rows}
    return Outcomes(
        succeeded=sum(counts.get(s, 0) for s in SUCCEEDED_STATUSES),
        failed=sum(counts.get(s, 0) for s in FAILED_STATUSES),
    )


__all__ = ["FAILED_STATUSES", "SUCCEEDED_STATUSES", "Outcomes", "outcomes"]
