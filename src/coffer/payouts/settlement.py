"""Settling a payout: what the provider said, from its answer, a webhook or the reconciler.

A payout moves only forward (`moves_forward`): `pending -> processing -> paid | failed |
cancelled`, and `paid -> reversed`. Paid posts the hold; failed or cancelled voids it (the
earnings are available again); reversed after paid returns the amount with a reversal transfer.
Like every change of a payout, each emits `payout.updated`, and `wallet.updated` when the
earnings moved (`records.emit_changed`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from coffer import ledger
from coffer.ledger import PostHold, Reversal, VoidHold
from coffer.payouts.records import (
    LEDGER_SOURCE,
    REASON_LENGTH_MAX,
    Payout,
    emit_changed,
    get_payout,
    guarded_update,
    locked_payout,
)

FINAL = frozenset({"failed", "cancelled", "reversed"})
_RANK = {"pending": 0, "processing": 1, "paid": 2, "failed": 2, "cancelled": 2, "reversed": 3}


def moves_forward(current: str, new: str) -> bool:
    """Whether `current -> new` is a step forward (anything else is ignored, never applied)."""
    if current in FINAL or current == new:
        return False
    if current == "paid":
        return new == "reversed"
    return _RANK[new] > _RANK[current]


def settle(
    session: Session,
    *,
    payout_id: str,
    status: str,
    now: datetime,
    attempt: int | None = None,
    provider_payout_id: str | None = None,
    reason: str | None = None,
) -> Payout:
    """Book what the provider says of a payout, in the caller's transaction (which holds the
    ledger's write lock: the writer's, or a webhook's). Only forward moves are applied, so a
    replayed or late report changes nothing; `attempt`, when given, must be the payout's own
    (an answer about an earlier attempt is not this one's)."""
    payout = locked_payout(session, payout_id)
    if attempt is not None and attempt != payout.attempt:
        return payout
    values: dict[str, Any] = {}
    if provider_payout_id is not None and payout.provider_payout_id is None:
        values["provider_payout_id"] = provider_payout_id[:64]
    if not moves_forward(payout.status, status):
        if values:
            guarded_update(session, payout, updated_at=now, **values)
            return get_payout(session, payout_id)
        return payout
    posted: int | None = None
    meta = {"payout_id": payout.id, "attempt": payout.attempt}
    key = f"{payout.id}:{payout.attempt}"
    if status == "paid" or (status == "reversed" and payout.status != "paid"):
        (post,) = ledger.execute(
            session,
            [PostHold(payout.hold_id, metadata={**meta, "description": "Payout: paid"},
                      idempotency_key=f"{key}:post")],
            source=LEDGER_SOURCE,
            now=now,
        )  # fmt: skip
        values["post_transfer_id"] = post.id
        posted = post.debit_balance_after
    if status == "reversed":
        post_id = values.get("post_transfer_id", payout.post_transfer_id)
        assert post_id is not None
        (returned,) = ledger.execute(
            session,
            [Reversal(post_id, type="payout_reversal",
                      metadata={**meta, "description": "Payout: returned"},
                      idempotency_key=f"{key}:reverse")],
            source=LEDGER_SOURCE,
            now=now,
        )  # fmt: skip
        values["reversal_transfer_id"] = returned.id
        posted = returned.credit_balance_after
    if status in ("failed", "cancelled"):
        (voided,) = ledger.execute(
            session,
            [VoidHold(payout.hold_id, metadata=meta, idempotency_key=f"{key}:void")],
            source=LEDGER_SOURCE,
            now=now,
        )
        posted = voided.debit_balance_after
    if status in ("failed", "cancelled", "reversed"):
        values["failure_reason"] = (reason or f"the provider reports it {status}")[
            :REASON_LENGTH_MAX
        ]
    if status in ("paid", "failed", "cancelled", "reversed"):
        values["settled_at"] = now
    guarded_update(session, payout, status=status, updated_at=now, **values)
    settled = get_payout(session, payout_id)
    emit_changed(session, settled, earnings_posted=posted, now=now)
    return settled


__all__ = ["FINAL", "moves_forward", "settle"]
