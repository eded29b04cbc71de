"""The payment success-rate floor: an alert once per crossing below it (a bounded job).

Each run reads the success rate (`payments.Tally.success_rate`: succeeded over decided attempts)
of the orders created in the last `window_s`, in a read transaction of its own, then hands the
writer one unit of work that decides the crossing against the `alert_states` row:
- fewer than `attempts_min` decided attempts: nothing is decided (1 failure of 1 never fires);
- `ok` (or no row) and the rate below the floor: the row moves to `firing`, and in the same
  commit an alert (`GET /admin/alerts`) and an `alert.raised` event for the host app's
  webhook endpoints are written; a warning is logged once the commit has landed;
- `firing` and the rate back at or above the floor: the row moves to `ok` (it may fire again);
- anything else: no write.

Two processes running it at once cannot both fire: the unit's `before` runs under the ledger's
write lock (the chain head, taken first by every unit with a `before`, across processes), locks
the state row (FOR UPDATE), and `after` moves it with an update guarded on the state it read,
whose row count is checked. The second process's unit then finds `firing` and does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog
from sqlalchemy import CursorResult, Row, select, update
from sqlalchemy.orm import Session

from coffer import alerts, events, ledger
from coffer.analytics import payments
from coffer.analytics.tables import alert_states
from coffer.db import Database, Writer, dialect
from coffer.kit.clock import Clock

KIND = "payments.success_rate"
ALERT_KIND = "payments.success_rate_below_floor"
ALERT_EVENT = "alert.raised"
# Outbox events belong to a user's stream; operator alerts go to one no user id can name
# (user ids match auth.USER_ID_PATTERN, which has no `$`), so only webhook endpoints get them.
OPERATOR_STREAM = "$operator"

Outcome = Literal["fired", "recovered", "unchanged", "too_few_attempts"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FloorCheck:
    """What one run saw and decided."""

    outcome: Outcome
    rate: float | None
    attempts: int  # decided attempts in the window: the rate's denominator
    floor: float


def check_success_floor(
    database: Database,
    writer: Writer,
    clock: Clock,
    *,
    floor: float,
    window_s: int,
    attempts_min: int,
) -> FloorCheck:
    """One run of the floor check (see the module docstring)."""
    assert 0 < floor <= 1 and window_s > 0 and attempts_min >= 1
    now = clock()
    with database.snapshot() as session:  # one instant; its rows are streamed
        tally = payments.window_tally(session, start=now - timedelta(seconds=window_s), end=now)
    rate = tally.success_rate
    if rate is None or tally.decided < attempts_min:
        return FloorCheck("too_few_attempts", rate, tally.decided, floor)
    outcome: Outcome = writer.run(
        _crossing_work(rate=rate, attempts=tally.decided, floor=floor, window_s=window_s, now=now)
    )
    seen = FloorCheck(outcome, rate, tally.decided, floor)
    if outcome == "fired":
        log.warning(
            "payment_success_rate_below_floor",
            rate=round(rate, 4),
            floor=floor,
            attempts=tally.decided,
            window_s=window_s,
        )
    elif outcome == "recovered":
        log.info("payment_success_rate_recovered", rate=round(rate, 4), floor=floor)
    return seen


def _crossing_work(
    *, rate: float, attempts: int, floor: float, window_s: int, now: datetime
) -> ledger.Work:
    def before(session: Session) -> Any:
        row = _locked_state(session)
        state = "ok" if row is None else row.state
        below = rate < floor
        if (state == "ok") == (not below):
            return ledger.Done("unchanged")  # no crossing: ok and above, or firing and below
        return (row, "firing" if below else "ok")

    def after(session: Session, value: tuple[Row[Any] | None, str], _: list[Any]) -> Outcome:
        row, new_state = value
        _move_state(session, row, new_state, rate=rate, attempts=attempts, now=now)
        if new_state == "ok":
            alerts.resolve_alerts(session, kind=ALERT_KIND, subject_id=KIND, now=now)
            return "recovered"
        message = (
            f"payment success rate {rate:.1%} is below its floor {floor:.1%} "
            f"({attempts} decided attempts in the last {window_s} s)"
        )
        details = {"rate": rate, "floor": floor, "attempts": attempts, "window_s": window_s}
        alerts.raise_alert(
            session, kind=ALERT_KIND, severity="critical", message=message, now=now,
            subject_id=KIND, details=details,
        )  # fmt: skip
        events.emit(
            session,
            [
                events.NewEvent(
                    OPERATOR_STREAM,
                    ALERT_EVENT,
                    {"kind": ALERT_KIND, "severity": "critical", "message": message, **details},
                )
            ],
            now=now,
        )
        return "fired"

    return ledger.Work(None, before=before, after=after, claims=frozenset({f"alert_state:{KIND}"}))


def _locked_state(session: Session) -> Row[Any] | None:
    return session.execute(
        select(alert_states).where(alert_states.c.kind == KIND).with_for_update()
    ).one_or_none()


def _move_state(
    session: Session,
    row: Row[Any] | None,
    new_state: str,
    *,
    rate: float,
    attempts: int,
    now: datetime,
) -> None:
    values = {"state": new_state, "changed_at": now, "value": rate, "attempts": attempts}
    if row is None:
        # RETURNING says whether it inserted (psycopg's rowcount for ON CONFLICT is not kept).
        moved = (
            session.execute(
                dialect.insert(session, alert_states)
                .values(kind=KIND, **values)
                .on_conflict_do_nothing(index_elements=["kind"])
                .returning(alert_states.c.kind)
            ).first()
            is not None
        )
    else:
        result = session.execute(
            update(alert_states)
            .where(alert_states.c.kind == KIND, alert_states.c.state == row.state)
            .values(**values)
        )
        moved = isinstance(result, CursorResult) and result.rowcount == 1
    # Paired with the lock in `before`: nobody moved the row in between (survives python -O).
    if not moved:
        raise ledger.InvariantViolated(f"alert state {KIND} changed under its lock")


__all__ = ["ALERT_EVENT", "ALERT_KIND", "KIND", "FloorCheck", "check_success_floor"]
