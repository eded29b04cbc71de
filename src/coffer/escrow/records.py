"""Escrow rows: the record, its state machine, its reads, and what every move shares (the row
lock, the guarded update, the events it emits); see `service.py` for opening, releasing and
disputing, and `settlement.py` for what payments calls when an escrow's order is paid.

The state machine is one table, `MOVES`: for each move, the states it may leave and who may
make it from each. Any other move is 409 `invalid_state` and moves nothing; a party who may
never make a move (the payee releasing) is 403 `forbidden`; anyone else sees 404.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, Row, or_, select, update
from sqlalchemy.orm import Session

from coffer import events, ledger
from coffer.db import pages
from coffer.errors import Forbidden, InvalidState, NotFound
from coffer.escrow.tables import escrows

LIST_LIMIT_MAX = 500

PAYER, PAYEE, ADMIN, SYSTEM = "payer", "payee", "admin", "system"
_PAYER_ADMIN = frozenset({PAYER, ADMIN})
_PARTIES = frozenset({PAYER, PAYEE})
_ADMIN = frozenset({ADMIN})
_SYSTEM = frozenset({SYSTEM})

# move -> {state it may leave: who may make it from there}. The one table of the state machine.
MOVES: dict[str, dict[str, frozenset[str]]] = {
    "fund": {"pending": _SYSTEM},
    "release": {"held": _PAYER_ADMIN, "partially_released": _PAYER_ADMIN, "disputed": _ADMIN},
    "auto_release": {"held": _SYSTEM, "partially_released": _SYSTEM},
    "refund": {"held": _PAYER_ADMIN, "partially_released": _ADMIN, "disputed": _ADMIN},
    "dispute": {"held": _PARTIES, "partially_released": _PARTIES},
    "refund_settled": {"refunding": _SYSTEM},
    "refund_failed": {"refunding": _SYSTEM},
}
# What a party may ever do, whatever the state: outside this a move is 403, not 409.
_ANYWHERE = {move: frozenset().union(*states.values()) for move, states in MOVES.items()}


@dataclass(frozen=True, slots=True)
class Escrow:
    id: str
    payer_id: str
    payee_id: str
    amount: int
    currency: str
    fee_bps: int
    status: str
    reference: str | None
    order_id: str
    account_id: int | None
    released_amount: int
    fee_amount: int
    refunded_amount: int
    refund_id: str | None
    status_before: str | None
    auto_release_at: datetime | None
    dispute_reason: str | None
    disputed_by: str | None
    created_at: datetime
    updated_at: datetime
    held_at: datetime | None

    @property
    def left(self) -> int:
        """What the escrow's account still holds."""
        return self.amount - self.released_amount - self.refunded_amount


_FIELDS = tuple(f.name for f in dataclasses.fields(Escrow))


def from_row(row: Row[Any]) -> Escrow:
    """An `escrows` row as its record."""
    return Escrow(**{name: row._mapping[name] for name in _FIELDS})


def check_move(escrow: Escrow, move: str, role: str) -> None:
    """Refuse a move the table does not allow: 403 for a role that may never make it, else 409."""
    if role not in _ANYWHERE[move]:
        raise Forbidden(f"the {role} of an escrow may not {move.replace('_', ' ')} it")
    if role not in MOVES[move].get(escrow.status, frozenset()):
        raise InvalidState(
            f"an escrow that is {escrow.status} cannot be {_PAST[move]} by the {role}",
            status=escrow.status,
            move=move,
        )


_PAST = {
    "fund": "funded",
    "release": "released",
    "auto_release": "released",
    "refund": "refunded",
    "dispute": "disputed",
    "refund_settled": "refunded",
    "refund_failed": "restored",
}


def role_of(escrow: Escrow, *, user_id: str | None, admin: bool) -> str:
    """Who the caller is to this escrow; someone else's escrow is not found."""
    if admin:
        return ADMIN
    if user_id == escrow.payer_id:
        return PAYER
    if user_id == escrow.payee_id:
        return PAYEE
    raise NotFound(f"no escrow {escrow.id}", escrow_id=escrow.id)


# ---------------------------------------------------------------------------------------------
# Reads


def get_escrow(session: Session, escrow_id: str, *, for_update: bool = False) -> Escrow:
    query = select(escrows).where(escrows.c.id == escrow_id)
    if for_update:
        query = query.with_for_update()
    row = session.execute(query).first()
    if row is None:
        raise NotFound(f"no escrow {escrow_id}", escrow_id=escrow_id)
    return from_row(row)


def find_by_order(session: Session, order_id: str, *, for_update: bool = False) -> Escrow:
    query = select(escrows).where(escrows.c.order_id == order_id)
    if for_update:
        query = query.with_for_update()
    row = session.execute(query).first()
    if row is None:
        raise ledger.InvariantViolated(f"order {order_id} is for an escrow that does not exist")
    return from_row(row)


def list_escrows(
    session: Session,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
    party_id: str | None = None,
    status: str | None = None,
) -> tuple[list[Escrow], bool]:
    """Newest first, keyset-paged on (created_at, id); `party_id` as payer or as payee."""
    assert 0 < limit <= LIST_LIMIT_MAX
    query = select(escrows)
    if party_id is not None:
        query = query.where(or_(escrows.c.payer_id == party_id, escrows.c.payee_id == party_id))
    rows, has_more = pages.newest_first(
        session,
        query,
        at=escrows.c.created_at,
        id_=escrows.c.id,
        limit=limit,
        before=before,
        equal=((escrows.c.status, status),),
    )
    return [from_row(r) for r in rows], has_more


def due_for_release(session: Session, *, now: datetime, limit: int) -> list[str]:
    """Held escrows whose `auto_release_at` has passed, soonest first."""
    rows = session.execute(
        select(escrows.c.id)
        .where(
            escrows.c.status.in_(("held", "partially_released")),
            escrows.c.auto_release_at <= now,
        )
        .order_by(escrows.c.auto_release_at, escrows.c.id)
        .limit(limit)
    )
    return [r.id for r in rows]


# ---------------------------------------------------------------------------------------------
# Writing a move (inside a unit of work, the row locked)


def guarded_update(session: Session, escrow: Escrow, *, now: datetime, **values: Any) -> Escrow:
    """Change the locked row; the WHERE repeats what the move was decided on (paired check)."""
    result = session.execute(
        update(escrows)
        .where(
            escrows.c.id == escrow.id,
            escrows.c.status == escrow.status,
            escrows.c.released_amount == escrow.released_amount,
            escrows.c.refunded_amount == escrow.refunded_amount,
        )
        .values(updated_at=now, **values)
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        raise ledger.InvariantViolated(f"escrow {escrow.id} changed under its lock")
    moved = get_escrow(session, escrow.id)
    events.emit(session, escrow_events(moved), now=now)
    return moved


def escrow_events(escrow: Escrow) -> list[events.NewEvent]:
    data = {
        "escrow_id": escrow.id,
        "status": escrow.status,
        "amount": escrow.amount,
        "currency": escrow.currency,
        "released_amount": escrow.released_amount,
        "refunded_amount": escrow.refunded_amount,
        "left": escrow.left,
    }
    return [
        events.NewEvent(escrow.payer_id, "escrow.updated", data),
        events.NewEvent(escrow.payee_id, "escrow.updated", data),
    ]


def locked_as_planned(session: Session, planned: Escrow, move: str, role: str) -> Escrow:
    """The row locked, the move still allowed, and nothing moved since it was planned."""
    escrow = get_escrow(session, planned.id, for_update=True)
    check_move(escrow, move, role)
    if (escrow.released_amount, escrow.refunded_amount) != (
        planned.released_amount,
        planned.refunded_amount,
    ):
        raise InvalidState(
            f"escrow {escrow.id} moved while this request was on its way: ask again",
            status=escrow.status,
        )
    return escrow


__all__ = [
    "ADMIN",
    "LIST_LIMIT_MAX",
    "MOVES",
    "PAYEE",
    "PAYER",
    "SYSTEM",
    "Escrow",
    "check_move",
    "due_for_release",
    "escrow_events",
    "find_by_order",
    "from_row",
    "get_escrow",
    "guarded_update",
    "list_escrows",
    "locked_as_planned",
    "role_of",
]
