"""Metered calls: authorise time with a hold, capture what was used, release the rest.

- **Start** holds the caller's wallet for `calls.hold_minutes` at the call's rate, or for less
  if the balance allows less; below the minimum balance (default: one minute's price) it is 402
  `below_minimum_balance`. The hold's timeout is the authorised time plus a grace period.
- **Extend** replaces the hold with a larger one (void + new hold, one linked group), so a call
  always has exactly one open hold and no part of it can lapse on its own.
- **End** captures `cost = ceil(duration_s * rate_per_minute / 60)`, never more than is held,
  and splits it like a gift (agency commission, platform fee, host earnings); the rest is
  released. Ending twice answers the first result.
- A call nobody ends lapses with its hold: the ledger releases the funds at the timeout, and the
  expiry job marks the call `expired`; the caller pays nothing.

Every change is a unit of work for the writer, with `call.updated` and `wallet.updated` events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.orm import Session

from coffer import events, ledger
from coffer.calls.rates import current_rate
from coffer.calls.tables import calls
from coffer.config import ShopConfig
from coffer.db import Database, pages
from coffer.errors import BelowMinimumBalance, InsufficientFunds, InvalidState, NotFound
from coffer.kit.money import ceil_div
from coffer.ledger import Group, PostHold, TransferRequest, VoidHold, Work
from coffer.wallets import service as wallets
from coffer.wallets.split import Split, split

LEDGER_SOURCE = "calls"
# The hold outlives the authorised time by this much, so a call ended on time is always captured.
GRACE_S = 60
# `call.updated` with `"warning": "time_nearly_used"` this long before the authorised time ends.
WARN_BEFORE_S = 60
LIST_LIMIT_MAX = 500
SECONDS_PER_MINUTE = 60
_LEG_TYPES = {"host": "call_charge", "agency": "commission", "platform": "fee"}


def _rowcount(result: Any) -> int:
    count: int = result.rowcount
    return count


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    caller_id: str
    host_id: str
    asset: str
    rate_per_minute: int
    status: str
    hold_id: int
    hold_amount: int
    authorized_seconds: int
    extensions: int
    duration_s: int | None
    cost: int | None
    host_amount: int | None
    agency_amount: int | None
    platform_amount: int | None
    agency_id: str | None
    started_at: datetime
    expires_at: datetime
    warned_at: datetime | None
    ended_at: datetime | None
    updated_at: datetime


def _call(row: Row[Any]) -> Call:
    m = row._mapping
    return Call(**{name: m[name] for name in Call.__slots__})


# ---------------------------------------------------------------------------------------------
# Planning


def _seconds_for(amount: int, rate_per_minute: int) -> int:
    """How many whole seconds `amount` pays for: ceil(s * rate / 60) <= amount."""
    return amount * SECONDS_PER_MINUTE // rate_per_minute


def cost_of(duration_s: int, rate_per_minute: int) -> int:
    """What a call of `duration_s` costs at `rate_per_minute`, rounded up to the minor unit."""
    return ceil_div(duration_s * rate_per_minute, SECONDS_PER_MINUTE)


@dataclass(frozen=True, slots=True)
class _Accounts:
    wallet: ledger.Account
    clearing: int
    host: int
    agency: int | None
    platform: int


def _accounts(database: Database, *, caller_id: str, host_id: str, asset: str) -> _Accounts:
    """The call's accounts, opened on first use (a write only the first time)."""

    def find(session: Session) -> _Accounts | None:
        host = wallets.find_user(session, host_id)
        agency_id = None if host is None else host.agency_id
        wanted: list[tuple[str, str, str]] = [
            ("user", caller_id, "wallet"),
            ("platform", wallets.PLATFORM_OWNER_ID, "calls"),
            ("user", host_id, "earnings"),
            ("platform", wallets.PLATFORM_OWNER_ID, "fees"),
        ]
        if agency_id is not None:
            wanted.append(("agency", agency_id, "earnings"))
        found = [
            ledger.find_account(session, asset=asset, owner_type=t, owner_id=o, kind=k)
            for t, o, k in wanted
        ]
        if host is None or any(a is None for a in found):
            return None
        wallet, clearing, earnings, fees, *agency = (a for a in found if a is not None)
        return _Accounts(
            wallet, clearing.id, earnings.id, agency[0].id if agency else None, fees.id
        )

    with database.read() as session:
        known = find(session)
    if known is not None:
        return known
    with database.unit_of_work() as session:
        wallets.wallet_account(session, caller_id, asset)
        wallets.earnings_account(session, host_id, asset)
        wallets.platform_account(session, kind="calls", asset=asset)
        wallets.platform_account(session, kind="fees", asset=asset)
        agency = wallets.agency_of_user(session, host_id)
        if agency is not None:
            wallets.agency_account(session, agency.id, asset=asset)
    with database.read() as session:
        made = find(session)
    assert made is not None
    return made


def call_events(call: Call, *, wallet_posted: int | None, **extra: Any) -> list[events.NewEvent]:
    data = {
        "call_id": call.id,
        "status": call.status,
        "authorized_seconds": call.authorized_seconds,
        "hold_amount": call.hold_amount,
        "cost": call.cost,
        **extra,
    }
    made = [
        events.NewEvent(call.caller_id, "call.updated", data),
        events.NewEvent(call.host_id, "call.updated", data),
    ]
    if wallet_posted is not None:
        made.append(
            events.NewEvent(
                call.caller_id,
                "wallet.updated",
                {"kind": "wallet", "asset": call.asset, "posted": wallet_posted, "cause": call.id},
            )
        )
    return made


def plan_start_call(
    database: Database,
    shop: ShopConfig,
    *,
    call_id: str,
    caller_id: str,
    host_id: str,
    asset: str | None,
    rate_per_minute: int | None,
) -> Work:
    """Check the caller can pay for a first stretch and return the unit that holds it."""
    wallets.check_user_id(caller_id, field="body.caller_id")
    wallets.check_user_id(host_id, field="body.host_id")
    if caller_id == host_id:
        raise InvalidState("a caller cannot call themself")
    with database.read() as session:
        wallets.check_may_spend(session, caller_id)  # a frozen caller starts nothing (403)
        rate = current_rate(session, shop, host_id=host_id)
    if asset is not None and rate_per_minute is None and asset != rate.asset:
        raise InvalidState(f"this host's rate is in {rate.asset}, not {asset}", asset=rate.asset)
    chosen_asset = asset or rate.asset
    if chosen_asset not in shop.assets:
        raise NotFound(f"no asset {chosen_asset}", asset=chosen_asset)
    per_minute = rate_per_minute or rate.rate_per_minute
    accounts = _accounts(database, caller_id=caller_id, host_id=host_id, asset=chosen_asset)
    minimum = shop.calls.minimum_balance
    minimum = per_minute if minimum is None else minimum
    available = accounts.wallet.available
    if available < max(minimum, 1) or _seconds_for(available, per_minute) < 1:
        raise BelowMinimumBalance(
            f"a call needs at least {minimum} {chosen_asset} available",
            minimum_balance=minimum,
            available=available,
        )
    hold_amount = min(per_minute * shop.calls.hold_minutes, available)
    seconds = _seconds_for(hold_amount, per_minute)
    operations = (
        TransferRequest(
            debit_account_id=accounts.wallet.id,
            credit_account_id=accounts.clearing,
            amount=hold_amount,
            type="call_charge",
            metadata={"call_id": call_id, "host_id": host_id, "description": "Call: time held"},
            idempotency_key=f"{call_id}:hold:0",
            pending=True,
            timeout_s=seconds + GRACE_S,
        ),
    )

    def after(session: Session, _: object, made: list[ledger.Transfer]) -> Call:
        (hold,) = made
        now = hold.created_at
        values = {
            "id": call_id,
            "caller_id": caller_id,
            "host_id": host_id,
            "asset": chosen_asset,
            "rate_per_minute": per_minute,
            "status": "active",
            "hold_id": hold.id,
            "hold_amount": hold_amount,
            "authorized_seconds": seconds,
            "extensions": 0,
            "started_at": now,
            "expires_at": hold.expires_at,
            "updated_at": now,
        }
        session.execute(insert(calls).values(**values))
        call = get_call(session, call_id)
        events.emit(session, call_events(call, wallet_posted=None), now=now)
        return call

    return Work(Group(operations, LEDGER_SOURCE), after=after, claims=frozenset({call_id}))


def locked_active(session: Session, call_id: str) -> Call:
    row = session.execute(select(calls).where(calls.c.id == call_id).with_for_update()).first()
    if row is None:
        raise NotFound(f"no call {call_id}", call_id=call_id)
    return _call(row)


def plan_extend_call(database: Database, shop: ShopConfig, *, call: Call) -> Work:
    """Hold another stretch for an active call (402 when nothing more can be held)."""
    if call.status != "active":
        raise InvalidState(f"the call is {call.status}", status=call.status)
    with database.read() as session:
        # A frozen caller holds no more; the call runs to its authorised time and is billed
        # from what was held before the freeze (ending it spends nothing new).
        wallets.check_may_spend(session, call.caller_id)
    accounts = _accounts(database, caller_id=call.caller_id, host_id=call.host_id, asset=call.asset)
    more = min(call.rate_per_minute * shop.calls.hold_minutes, accounts.wallet.available)
    if (
        more <= 0
        or _seconds_for(call.hold_amount + more, call.rate_per_minute) <= call.authorized_seconds
    ):
        raise InsufficientFunds(
            "nothing more can be held for this call", available=accounts.wallet.available
        )
    total = call.hold_amount + more
    seconds = _seconds_for(total, call.rate_per_minute)
    number = call.extensions + 1
    # What is left of the authorised time, from now, decides the new hold's timeout; the
    # writer's clock is close enough to the plan's that the grace period covers the gap.
    remaining_s = max(
        0, int((call.started_at + timedelta(seconds=seconds) - ledger.utc_now()).total_seconds())
    )
    operations = (
        VoidHold(
            hold_id=call.hold_id,
            metadata={"call_id": call.id, "replaced_by_extension": number},
            idempotency_key=f"{call.id}:release:{number}",
        ),
        TransferRequest(
            debit_account_id=accounts.wallet.id,
            credit_account_id=accounts.clearing,
            amount=total,
            type="call_charge",
            metadata={"call_id": call.id, "extension": number, "description": "Call: time held"},
            idempotency_key=f"{call.id}:hold:{number}",
            pending=True,
            timeout_s=remaining_s + GRACE_S,
        ),
    )

    def before(session: Session) -> Call:
        locked = locked_active(session, call.id)
        if locked.status != "active" or locked.extensions != call.extensions:
            raise InvalidState(f"the call is {locked.status}", status=locked.status)
        return locked

    def after(session: Session, locked: Call, made: list[ledger.Transfer]) -> Call:
        hold = made[-1]
        result = session.execute(
            update(calls)
            .where(calls.c.id == call.id, calls.c.extensions == locked.extensions)
            .values(
                hold_id=hold.id,
                hold_amount=total,
                authorized_seconds=seconds,
                extensions=number,
                expires_at=hold.expires_at,
                warned_at=None,
                updated_at=hold.created_at,
            )
        )
        if _rowcount(result) != 1:
            raise InvalidState("the call changed while it was extended")
        extended = get_call(session, call.id)
        events.emit(session, call_events(extended, wallet_posted=None), now=hold.created_at)
        return extended

    return Work(
        Group(operations, LEDGER_SOURCE), before=before, after=after, claims=frozenset({call.id})
    )


def plan_end_call(database: Database, shop: ShopConfig, *, call: Call, duration_s: int) -> Work:
    """Capture what the call cost (at most what is held), split it, release the rest."""
    if call.status == "ended":
        return Work(None, before=lambda _: ledger.Done(call))  # the first result stands
    if call.status != "active":
        raise InvalidState(f"the call is {call.status}", status=call.status)
    cost = min(cost_of(duration_s, call.rate_per_minute), call.hold_amount)
    accounts = _accounts(database, caller_id=call.caller_id, host_id=call.host_id, asset=call.asset)
    with database.read() as session:
        agency = wallets.agency_of_user(session, call.host_id)
    shares: Split | None = None
    meta = {"call_id": call.id, "host_id": call.host_id, "duration_s": duration_s}
    operations: list[ledger.Operation]
    if cost == 0:
        operations = [
            VoidHold(hold_id=call.hold_id, metadata=meta, idempotency_key=f"{call.id}:end")
        ]
    else:
        shares = split(
            cost,
            commission_bps=None if agency is None else agency.commission_bps,
            fee_bps=shop.split.platform_fee_bps,
        )
        operations = [
            PostHold(
                hold_id=call.hold_id,
                amount=cost,
                metadata={**meta, "description": f"Call: {duration_s} s"},
                idempotency_key=f"{call.id}:end",
            )
        ]
        for leg, account_id, amount in (
            ("host", accounts.host, shares.host_amount),
            ("agency", accounts.agency, shares.agency_amount),
            ("platform", accounts.platform, shares.platform_amount),
        ):
            if amount > 0 and account_id is not None:
                operations.append(
                    TransferRequest(
                        debit_account_id=accounts.clearing,
                        credit_account_id=account_id,
                        amount=amount,
                        type=_LEG_TYPES[leg],
                        metadata={**meta, "share": leg},
                        idempotency_key=f"{call.id}:{leg}",
                    )
                )

    def before(session: Session) -> Any:
        locked = locked_active(session, call.id)
        if locked.status == "ended":
            return ledger.Done(locked)
        if locked.status != "active" or locked.hold_id != call.hold_id:
            raise InvalidState(f"the call is {locked.status}", status=locked.status)
        return locked

    def after(session: Session, locked: Call, made: list[ledger.Transfer]) -> Call:
        now = made[0].created_at
        result = session.execute(
            update(calls)
            .where(calls.c.id == call.id, calls.c.status == "active")
            .values(
                status="ended",
                duration_s=duration_s,
                cost=cost,
                host_amount=0 if shares is None else shares.host_amount,
                agency_amount=0 if shares is None else shares.agency_amount,
                platform_amount=0 if shares is None else shares.platform_amount,
                agency_id=None if agency is None else agency.id,
                ended_at=now,
                updated_at=now,
            )
        )
        if _rowcount(result) != 1:
            raise InvalidState("the call changed while it was ended")
        ended = get_call(session, call.id)
        posted = made[0].debit_balance_after
        events.emit(session, call_events(ended, wallet_posted=posted), now=now)
        return ended

    return Work(
        Group(tuple(operations), LEDGER_SOURCE),
        before=before,
        after=after,
        claims=frozenset({call.id}),
    )


# ---------------------------------------------------------------------------------------------
# Reads and jobs


def get_call(session: Session, call_id: str) -> Call:
    row = session.execute(select(calls).where(calls.c.id == call_id)).first()
    if row is None:
        raise NotFound(f"no call {call_id}", call_id=call_id)
    return _call(row)


def list_calls(
    session: Session,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
    status: str | None = None,
    caller_id: str | None = None,
    host_id: str | None = None,
) -> tuple[list[Call], bool]:
    """Newest first, keyset-paged on (started_at, id); returns (calls, has_more)."""
    assert 0 < limit <= LIST_LIMIT_MAX
    rows, has_more = pages.newest_first(
        session,
        select(calls),
        at=calls.c.started_at,
        id_=calls.c.id,
        limit=limit,
        before=before,
        equal=(
            (calls.c.status, status),
            (calls.c.caller_id, caller_id),
            (calls.c.host_id, host_id),
        ),
    )
    return [_call(r) for r in rows], has_more
