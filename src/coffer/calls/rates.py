"""Call rates: a host's own, else the global one an admin set, else `coffer.toml`'s.

Setting one is an operator action, recorded in the audit trail in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from coffer import ledger, oplog
from coffer.calls.tables import call_rates
from coffer.config import ShopConfig
from coffer.db import dialect
from coffer.errors import InvalidState
from coffer.wallets import service as wallets

GLOBAL_RATE = "*"


@dataclass(frozen=True, slots=True)
class Rate:
    asset: str
    rate_per_minute: int
    host_id: str | None  # None: the global rate (or the configured default)


def current_rate(session: Session, shop: ShopConfig, *, host_id: str | None = None) -> Rate:
    """The host's own rate, else the global one an admin set, else `coffer.toml`'s."""
    keys = [GLOBAL_RATE] if host_id is None else [host_id, GLOBAL_RATE]
    rows = {
        r.host_id: r
        for r in session.execute(select(call_rates).where(call_rates.c.host_id.in_(keys)))
    }
    for key in keys:
        row = rows.get(key)
        if row is not None:
            return Rate(row.asset, row.rate_per_minute, None if key == GLOBAL_RATE else key)
    return Rate(shop.calls.asset, shop.calls.rate_per_minute, None)


def set_rate(
    session: Session,
    shop: ShopConfig,
    *,
    host_id: str | None,
    asset: str,
    rate_per_minute: int,
    actor: str,
    now: datetime,
    reason: str | None = None,
) -> Rate:
    """Set the global rate, or one host's: an operator action, in the audit trail with the
    rate it replaced."""
    if asset not in shop.assets:
        raise InvalidState(f"{asset} is not a configured asset", asset=asset)
    ledger.check_amount(rate_per_minute, what="rate_per_minute")
    key = GLOBAL_RATE if host_id is None else wallets.check_user_id(host_id, field="body.host_id")
    previous = session.execute(select(call_rates).where(call_rates.c.host_id == key)).first()
    values = {"asset": asset, "rate_per_minute": rate_per_minute, "updated_by": actor[:80]}
    session.execute(
        dialect.insert(session, call_rates)
        .values(host_id=key, updated_at=now, **values)
        .on_conflict_do_update(index_elements=["host_id"], set_={**values, "updated_at": now})
    )
    details: dict[str, Any] = {"asset": asset, "rate_per_minute": rate_per_minute}
    if previous is not None:
        details["previous"] = {"asset": previous.asset, "rate_per_minute": previous.rate_per_minute}
    oplog.record(
        session,
        actor=actor,
        action="call_rate.set",
        subject_type="call_rate",
        subject_id=key,
        reason=reason,
        details=details,
        now=now,
    )
    return Rate(asset, rate_per_minute, host_id)
