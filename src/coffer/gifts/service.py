"""Gifts: a sender's diamonds to a host, split with the host's agency and the platform.

One gift is one linked ledger group (all legs or none): sender wallet -> host earnings (the
rest), -> agency earnings (its `commission_bps`), -> platform fees (`split.platform_fee_bps`).
`plan_send_gift` reads and validates (on the event loop) and returns a unit of work; the
writer commits it with the gift row and its events (`db/writer.py`). Nothing moves on any error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select
from sqlalchemy.orm import Session

from coffer import events, ledger
from coffer.config import DIAMOND, ShopConfig
from coffer.db import Database, pages
from coffer.errors import NotFound, ValidationFailed
from coffer.gifts.tables import gifts
from coffer.ledger import Group, TransferRequest, Work
from coffer.wallets import Agency, User
from coffer.wallets import service as wallets
from coffer.wallets.split import Split, split

LEDGER_SOURCE = "gifts"
MESSAGE_LENGTH_MAX = 280
LIST_LIMIT_MAX = 500
TOP_RECEIVERS_MAX = 10


@dataclass(frozen=True, slots=True)
class Gift:
    id: str
    sender_id: str
    receiver_id: str
    gift_type: str | None
    diamonds: int
    host_amount: int
    agency_amount: int
    platform_amount: int
    agency_id: str | None
    message: str | None
    call_id: str | None
    transfer_id: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SentGift:
    gift: Gift
    sender_balance: int  # the sender's posted wallet balance right after the gift


def _gift(row: Row[Any]) -> Gift:
    m = row._mapping
    return Gift(**{name: m[name] for name in Gift.__slots__})


_AccountKey = tuple[str, str, str, str]  # (asset, owner_type, owner_id, kind)


@dataclass(frozen=True, slots=True)
class _Accounts:
    wallet: int
    host: int
    agency: int | None
    platform: int


def _wanted_accounts(
    *, sender_id: str, receiver_id: str, agency_id: str | None
) -> dict[str, _AccountKey]:
    wanted = {
        "wallet": (DIAMOND, "user", sender_id, "wallet"),
        "host": (DIAMOND, "user", receiver_id, "earnings"),
        "platform": (DIAMOND, "platform", wallets.PLATFORM_OWNER_ID, "fees"),
    }
    if agency_id is not None:
        wanted["agency"] = (DIAMOND, "agency", agency_id, "earnings")
    return wanted


def _accounts_if_all(
    wanted: dict[str, _AccountKey], found: dict[_AccountKey, ledger.Account]
) -> _Accounts | None:
    """The gift's accounts if every one exists already (the usual case: no write)."""
    if len(found) != len(wanted):
        return None
    ids = {name: found[key].id for name, key in wanted.items()}
    return _Accounts(
        wallet=ids["wallet"], host=ids["host"], agency=ids.get("agency"), platform=ids["platform"]
    )


def _open_accounts(
    session: Session, *, sender_id: str, receiver_id: str, agency_id: str | None
) -> _Accounts:
    agency = None
    if agency_id is not None:
        agency = wallets.agency_account(session, agency_id).id
    return _Accounts(
        wallet=wallets.wallet_account(session, sender_id).id,
        host=wallets.earnings_account(session, receiver_id).id,
        agency=agency,
        platform=wallets.platform_account(session, kind="fees", asset=DIAMOND).id,
    )


@dataclass(frozen=True, slots=True)
class _Parties:
    agency: Agency | None
    agency_id: str | None
    accounts: _Accounts | None  # None: one of them is not open yet


def _receiver_of(found: dict[str, User], *, sender_id: str, receiver_id: str) -> User:
    """Who gives and who receives, checked: the receiver."""
    if sender_id not in found:
        raise NotFound(f"no user {sender_id}: it has no wallet to give from", user_id=sender_id)
    wallets.ensure_may_spend(found[sender_id])  # a frozen sender gives nothing (403)
    receiver = found.get(receiver_id)
    if receiver is None:
        raise NotFound(f"no user {receiver_id}", user_id=receiver_id)
    return receiver


def _read_parties(session: Session, *, sender_id: str, receiver_id: str) -> _Parties:
    """The parties checked, the receiver's agency, the accounts if all exist: one session."""
    found = wallets.find_users(session, [sender_id, receiver_id])
    receiver = _receiver_of(found, sender_id=sender_id, receiver_id=receiver_id)
    agency_id = receiver.agency_id
    agency = None if agency_id is None else wallets.get_agency(session, agency_id)
    wanted = _wanted_accounts(sender_id=sender_id, receiver_id=receiver_id, agency_id=agency_id)
    accounts = _accounts_if_all(wanted, ledger.find_accounts(session, list(wanted.values())))
    return _Parties(agency=agency, agency_id=agency_id, accounts=accounts)


async def _fetch_parties(database: Database, *, sender_id: str, receiver_id: str) -> _Parties:
    """`_read_parties` over the database's hottest-read path: each read one round trip on
    the event loop, with no session (two or three statements)."""
    found = await wallets.find_users_async(database, [sender_id, receiver_id])
    receiver = _receiver_of(found, sender_id=sender_id, receiver_id=receiver_id)
    agency_id = receiver.agency_id
    agency = None if agency_id is None else await wallets.get_agency_async(database, agency_id)
    wanted = _wanted_accounts(sender_id=sender_id, receiver_id=receiver_id, agency_id=agency_id)
    query = ledger.find_accounts_query(list(wanted.values()))
    assert query is not None
    found_accounts = ledger.accounts_by_key(await database.fetch_async(*query))
    return _Parties(
        agency=agency, agency_id=agency_id, accounts=_accounts_if_all(wanted, found_accounts)
    )


async def plan_send_gift(
    database: Database,
    shop: ShopConfig,
    *,
    gift_id: str,
    sender_id: str,
    receiver_id: str,
    diamonds: int | None,
    gift_type: str | None,
    message: str | None,
    call_id: str | None,
) -> Work:
    """Validate a gift and return its unit of work: reads only (awaited on the event loop,
    `Database.fetch_async`), unless an account is new (opened in a worker thread)."""
    if (diamonds is None) == (gift_type is None):
        raise ValidationFailed(
            "give exactly one of diamonds and gift_type",
            fields=[{"field": "body", "message": "exactly one of diamonds, gift_type"}],
        )
    if gift_type is not None:
        item = shop.gift(gift_type)
        if item is None:
            raise ValidationFailed(
                f"there is no gift {gift_type!r} in the catalog",
                fields=[{"field": "body.gift_type", "message": "unknown gift type"}],
            )
        diamonds = item.diamonds
    assert diamonds is not None
    ledger.check_amount(diamonds, what="diamonds")
    if receiver_id == sender_id:
        raise ValidationFailed(
            "a gift cannot be sent to oneself",
            fields=[{"field": "body.receiver_id", "message": "is the sender"}],
        )
    if database.awaits_reads:  # PostgreSQL: each read a round trip on the event loop
        parties = await _fetch_parties(database, sender_id=sender_id, receiver_id=receiver_id)
    else:  # SQLite: one hop to the thread pool for all of them
        parties = await database.read_async(
            _read_parties, sender_id=sender_id, receiver_id=receiver_id
        )
    accounts = parties.accounts
    if accounts is None:
        accounts = await database.write_async(
            _open_accounts,
            sender_id=sender_id,
            receiver_id=receiver_id,
            agency_id=parties.agency_id,
        )
    agency = parties.agency
    shares = split(
        diamonds,
        commission_bps=None if agency is None else agency.commission_bps,
        fee_bps=shop.split.platform_fee_bps,
    )
    return _gift_work(
        gift_id=gift_id,
        sender_id=sender_id,
        receiver_id=receiver_id,
        gift_type=gift_type,
        shares=shares,
        accounts=accounts,
        agency_id=None if agency is None else agency.id,
        message=message,
        call_id=call_id,
    )


def _gift_work(
    *,
    gift_id: str,
    sender_id: str,
    receiver_id: str,
    gift_type: str | None,
    shares: Split,
    accounts: _Accounts,
    agency_id: str | None,
    message: str | None,
    call_id: str | None,
) -> Work:
    meta = {"gift_id": gift_id, "sender_id": sender_id, "receiver_id": receiver_id}
    legs = [
        ("host", accounts.host, shares.host_amount),
        ("agency", accounts.agency, shares.agency_amount),
        ("platform", accounts.platform, shares.platform_amount),
    ]
    operations = [
        TransferRequest(
            debit_account_id=accounts.wallet,
            credit_account_id=account_id,
            amount=amount,
            type="gift" if leg == "host" else ("commission" if leg == "agency" else "fee"),
            metadata={**meta, "share": leg},
            idempotency_key=f"{gift_id}:{leg}",
        )
        for leg, account_id, amount in legs
        if amount > 0 and account_id is not None
    ]
    total = shares.total

    def after(session: Session, _: object, made: list[ledger.Transfer]) -> SentGift:
        if sum(t.amount for t in made) != total:  # survives python -O: it guards money
            raise ArithmeticError(f"gift {gift_id} moved {sum(t.amount for t in made)} of {total}")
        gift = Gift(
            id=gift_id,
            sender_id=sender_id,
            receiver_id=receiver_id,
            gift_type=gift_type,
            diamonds=total,
            host_amount=shares.host_amount,
            agency_amount=shares.agency_amount,
            platform_amount=shares.platform_amount,
            agency_id=agency_id,
            message=message,
            call_id=call_id,
            transfer_id=made[0].id,
            created_at=made[0].created_at,
        )
        now = gift.created_at
        row = {n: getattr(gift, n) for n in Gift.__slots__}
        later = ledger.deferred(session, "gifts", _insert_gifts)
        if later is None:
            _insert_gifts(session, [row])
        else:
            later.append(row)  # the batch's gifts go in with one statement
        sender_balance = made[-1].debit_balance_after
        host_balance = next(
            (t.credit_balance_after for t in made if t.credit_account_id == accounts.host), None
        )
        summary = {
            "gift_id": gift_id,
            "sender_id": sender_id,
            "receiver_id": receiver_id,
            "gift_type": gift_type,
            "diamonds": total,
        }
        new = [
            events.NewEvent(sender_id, "gift.sent", summary),
            events.NewEvent(
                sender_id,
                "wallet.updated",
                {"kind": "wallet", "asset": DIAMOND, "posted": sender_balance, "cause": gift_id},
            ),
            events.NewEvent(
                receiver_id, "gift.received", {**summary, "host_amount": shares.host_amount}
            ),
        ]
        if host_balance is not None:
            new.append(
                events.NewEvent(
                    receiver_id,
                    "wallet.updated",
                    {
                        "kind": "earnings",
                        "asset": DIAMOND,
                        "posted": host_balance,
                        "cause": gift_id,
                    },
                )
            )
        events.emit(session, new, now=now)
        return SentGift(gift, sender_balance)

    return Work(Group(tuple(operations), LEDGER_SOURCE), after=after)


def _insert_gifts(session: Session, rows: list[dict[str, Any]]) -> None:
    session.execute(insert(gifts), rows)


# ---------------------------------------------------------------------------------------------
# Reads


def list_gifts(
    session: Session,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
    sender_id: str | None = None,
    receiver_id: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> tuple[list[Gift], bool]:
    """Newest first, keyset-paged on (created_at, id); returns (gifts, has_more)."""
    assert 0 < limit <= LIST_LIMIT_MAX
    rows, has_more = pages.newest_first(
        session,
        select(gifts),
        at=gifts.c.created_at,
        id_=gifts.c.id,
        limit=limit,
        before=before,
        equal=((gifts.c.sender_id, sender_id), (gifts.c.receiver_id, receiver_id)),
        created_from=created_from,
        created_to=created_to,
    )
    return [_gift(r) for r in rows], has_more


@dataclass(frozen=True, slots=True)
class GiftStats:
    count: int
    diamonds: int
    top_receivers: list[tuple[str, int, int]]  # (receiver_id, gifts, diamonds)


def gift_stats(
    session: Session,
    *,
    sender_id: str | None = None,
    receiver_id: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> GiftStats:
    """Count, diamonds and the top receivers of the gifts that match (a bounded range keeps it
    cheap: ask with from/to on a large book)."""
    conditions = []
    if sender_id is not None:
        conditions.append(gifts.c.sender_id == sender_id)
    if receiver_id is not None:
        conditions.append(gifts.c.receiver_id == receiver_id)
    if created_from is not None:
        conditions.append(gifts.c.created_at >= created_from)
    if created_to is not None:
        conditions.append(gifts.c.created_at < created_to)
    count, diamonds = session.execute(
        select(func.count(), func.coalesce(func.sum(gifts.c.diamonds), 0)).where(*conditions)
    ).one()
    top = session.execute(
        select(gifts.c.receiver_id, func.count(), func.sum(gifts.c.diamonds).label("total"))
        .where(*conditions)
        .group_by(gifts.c.receiver_id)
        .order_by(func.sum(gifts.c.diamonds).desc(), gifts.c.receiver_id)
        .limit(TOP_RECEIVERS_MAX)
    ).all()
    return GiftStats(int(count), int(diamonds), [(r[0], int(r[1]), int(r[2])) for r in top])


__all__ = ["Gift", "GiftStats", "SentGift", "gift_stats", "list_gifts", "plan_send_gift"]
