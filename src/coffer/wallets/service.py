"""Users, agencies and the ledger accounts they own. Functions take a session, never commit.

Users come into being on first reference: `ensure_user` makes the row and opens the user's
DIAMOND `wallet` and `earnings` accounts, both with the no-overdraft flag. Every other module
finds a user's or the platform's accounts through the functions here, so an account's owner,
kind and flags are decided in one place (the ledger refuses to reopen an account with other
flags).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from coffer import ledger, oplog
from coffer.auth.principal import USER_ID_PATTERN, is_user_id
from coffer.config import DIAMOND, ShopConfig
from coffer.db import Database
from coffer.errors import AccountFrozen, InvalidState, NotFound, ValidationFailed
from coffer.kit.clock import utc_now
from coffer.kit.money import BPS_PER_UNIT
from coffer.wallets import repository as repo
from coffer.wallets.repository import Agency, User

AGENCY_ID_PATTERN = USER_ID_PATTERN
DISPLAY_NAME_LENGTH_MAX = 128
AGENCY_NAME_LENGTH_MAX = 128
FREEZE_REASON_LENGTH_MAX = 500

USER_KINDS = ("wallet", "earnings")  # opened for DIAMOND when a user comes into being
# A user's or agency's account may never go below zero, under any concurrency (DESIGN.md).
OWNED_FLAGS = ledger.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
# The platform's and the system's accounts carry no flag: money enters and leaves the books
# through them (issuance, provider clearing), so they may go below zero.
PLATFORM_FLAGS = ledger.AccountFlags.NONE
PLATFORM_OWNER_ID = "coffer"

_AGENCY_ID = re.compile(AGENCY_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """One account as a wallet shows it: `available = posted - pending_out`."""

    account_id: int
    kind: str
    asset: str
    posted: int
    pending_out: int
    pending_in: int
    available: int

    @classmethod
    def of(cls, account: ledger.Account) -> AccountBalance:
        return cls(
            account_id=account.id,
            kind=account.kind,
            asset=account.asset,
            posted=account.balance,
            pending_out=account.debits_pending,
            pending_in=account.credits_pending,
            available=account.available,
        )


# ---------------------------------------------------------------------------------------------
# Assets


def define_assets(session: Session, shop: ShopConfig) -> list[ledger.Asset]:
    """Define every asset of the shop in the ledger (idempotent; run at start-up)."""
    return [
        ledger.define_asset(session, code=code, scale=asset.scale)
        for code, asset in sorted(shop.assets.items())
    ]


# ---------------------------------------------------------------------------------------------
# Users


def check_user_id(user_id: str, *, field: str = "path.user_id") -> str:
    if not is_user_id(user_id):
        raise ValidationFailed(
            "a user id is 1 to 64 characters of A-Z a-z 0-9 _ . : -",
            fields=[{"field": field, "message": "not a valid user id", "type": "user_id"}],
        )
    return user_id


def check_agency_id(agency_id: str, *, field: str = "path.agency_id") -> str:
    if not (isinstance(agency_id, str) and _AGENCY_ID.fullmatch(agency_id)):
        raise ValidationFailed(
            "an agency id is 1 to 64 characters of A-Z a-z 0-9 _ . : -",
            fields=[{"field": field, "message": "not a valid agency id", "type": "agency_id"}],
        )
    return agency_id


def find_user(session: Session, user_id: str) -> User | None:
    return repo.find_user(session.connection(), user_id)


def find_users(session: Session, user_ids: list[str]) -> dict[str, User]:
    """The users that exist among `user_ids`, by id, in one read."""
    return repo.find_users(session.connection(), user_ids)


async def find_users_async(database: Database, user_ids: list[str]) -> dict[str, User]:
    """`find_users` for a few ids, over the database's hottest-read path (`fetch_async`)."""
    query = repo.users_query(user_ids)
    assert query is not None, "a few ids at a time"
    users = (repo.user_from_mapping(row) for row in await database.fetch_async(*query))
    return {user.id: user for user in users}


def get_user(session: Session, user_id: str) -> User:
    found = repo.find_user(session.connection(), user_id)
    if found is None:
        raise NotFound(f"no user {user_id}", user_id=user_id)
    return found


def ensure_user(session: Session, user_id: str, *, now: datetime | None = None) -> User:
    """The user, made with its DIAMOND wallet and earnings accounts on first reference.

    Concurrent first references agree: the row and the accounts are inserted if absent.
    """
    check_user_id(user_id, field="user_id")
    conn = session.connection()
    found = repo.find_user(conn, user_id)
    if found is not None:
        return found
    now = now or utc_now()
    repo.insert_user_if_absent(conn, user_id, now=now)
    for kind in USER_KINDS:
        user_account(session, user_id, kind=kind, asset=DIAMOND, now=now)
    made = repo.find_user(conn, user_id)
    assert made is not None
    return made


def put_user(
    session: Session,
    user_id: str,
    *,
    display_name: str,
    agency_id: str | None,
    now: datetime | None = None,
) -> User:
    """Set the user's profile (made on first reference). PUT semantics: the fields given are
    the whole profile, so `agency_id=None` takes the user out of any agency.

    An agency that does not exist is a 422 on `agency_id` (the user's path is fine; the body
    refers to something missing), never an implicit agency with no name or commission.
    """
    check_user_id(user_id)
    if not (0 < len(display_name) <= DISPLAY_NAME_LENGTH_MAX and display_name.isprintable()):
        raise ValidationFailed(
            f"display_name must be 1 to {DISPLAY_NAME_LENGTH_MAX} printable characters",
            fields=[{"field": "body.display_name", "message": "invalid", "type": "display_name"}],
        )
    conn = session.connection()
    if agency_id is not None:
        check_agency_id(agency_id, field="body.agency_id")
        if repo.find_agency(conn, agency_id) is None:
            raise ValidationFailed(
                f"no agency {agency_id}: create it with PUT /agencies/{agency_id} first",
                fields=[
                    {"field": "body.agency_id", "message": "unknown agency", "type": "not_found"}
                ],
            )
    now = now or utc_now()
    ensure_user(session, user_id, now=now)
    repo.update_user(conn, user_id, display_name=display_name, agency_id=agency_id, now=now)
    return get_user(session, user_id)


# ---------------------------------------------------------------------------------------------
# Freezes


def check_may_spend(session: Session, user_id: str) -> None:
    """403 `account_frozen` if an operator froze the user's wallet; the one check every
    spender (gifts as sender, calls as caller, payouts) makes before it plans to move money.

    A frozen wallet still receives: nothing that credits it calls this. The check is made when
    the move is planned, so a move planned in the instant before a freeze commits may land just
    after it, as if it had come a moment earlier."""
    user = repo.find_user(session.connection(), user_id)
    if user is not None:
        ensure_may_spend(user)


def ensure_may_spend(user: User) -> None:
    """`check_may_spend` for a user row the caller has read already."""
    if user.frozen:
        raise AccountFrozen(
            f"the wallet of {user.id} is frozen: it may receive but not spend", user_id=user.id
        )


def _check_reason(reason: str) -> str:
    text = reason.strip() if isinstance(reason, str) else ""
    if not 0 < len(text) <= FREEZE_REASON_LENGTH_MAX:
        raise ValidationFailed(
            f"reason must be 1 to {FREEZE_REASON_LENGTH_MAX} characters",
            fields=[{"field": "body.reason", "message": "required", "type": "reason"}],
        )
    return text


def set_frozen(
    session: Session, user_id: str, *, frozen: bool, reason: str, actor: str, now: datetime
) -> User:
    """Freeze (or unfreeze) a user's wallet, with the operator's reason in the audit trail.

    404 for an unknown user; 409 `invalid_state` if it is already frozen (or not frozen)."""
    check_user_id(user_id)
    reason = _check_reason(reason)
    conn = session.connection()
    user = repo.find_user(conn, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}", user_id=user_id)
    if not repo.set_frozen(conn, user_id, frozen=frozen, reason=reason, actor=actor, now=now):
        state = "frozen" if user.frozen else "not frozen"
        raise InvalidState(f"the wallet of {user_id} is {state} already", frozen=user.frozen)
    oplog.record(
        session,
        actor=actor,
        action="user.freeze" if frozen else "user.unfreeze",
        subject_type="user",
        subject_id=user_id,
        reason=reason,
        details={"previous_reason": user.frozen_reason} if user.frozen else {},
        now=now,
    )
    return get_user(session, user_id)


# ---------------------------------------------------------------------------------------------
# Agencies


def find_agency(session: Session, agency_id: str) -> Agency | None:
    return repo.find_agency(session.connection(), agency_id)


def get_agency(session: Session, agency_id: str) -> Agency:
    return _found_agency(repo.find_agency(session.connection(), agency_id), agency_id)


async def get_agency_async(database: Database, agency_id: str) -> Agency:
    """`get_agency` over the database's hottest-read path (`fetch_async`)."""
    rows = await database.fetch_async(*repo.agency_query(agency_id))
    return _found_agency(repo.agency_from_mapping(rows[0]) if rows else None, agency_id)


def _found_agency(found: Agency | None, agency_id: str) -> Agency:
    if found is None:
        raise NotFound(f"no agency {agency_id}", agency_id=agency_id)
    return found


def agency_of_user(session: Session, user_id: str) -> Agency | None:
    """The agency a user belongs to, if any (gifts and calls pay it its commission)."""
    user = find_user(session, user_id)
    if user is None or user.agency_id is None:
        return None
    return get_agency(session, user.agency_id)


def put_agency(
    session: Session,
    agency_id: str,
    *,
    name: str,
    commission_bps: int,
    platform_fee_bps: int,
    now: datetime | None = None,
    actor: str | None = None,
) -> Agency:
    """Create or replace an agency; with an `actor` (an operator's key) it is audited.

    Its commission and the platform's fee are both taken from one gift, so together they may
    not exceed 100 %: `commission_bps <= 10000 - platform_fee_bps`.
    """
    check_agency_id(agency_id)
    if not (0 < len(name) <= AGENCY_NAME_LENGTH_MAX and name.isprintable()):
        raise ValidationFailed(
            f"name must be 1 to {AGENCY_NAME_LENGTH_MAX} printable characters",
            fields=[{"field": "body.name", "message": "invalid", "type": "name"}],
        )
    assert 0 <= platform_fee_bps <= BPS_PER_UNIT
    ceiling_bps = BPS_PER_UNIT - platform_fee_bps
    if type(commission_bps) is not int or not 0 <= commission_bps <= ceiling_bps:
        raise ValidationFailed(
            f"commission_bps must be from 0 to {ceiling_bps}: with the platform fee of "
            f"{platform_fee_bps} bps a gift cannot pay out more than 100 %",
            fields=[
                {
                    "field": "body.commission_bps",
                    "message": f"must be at most {ceiling_bps}",
                    "type": "commission_bps",
                }
            ],
        )
    now = now or utc_now()
    conn = session.connection()
    before = repo.find_agency(conn, agency_id)
    repo.upsert_agency(conn, agency_id, name=name, commission_bps=commission_bps, now=now)
    if actor is not None:
        details: dict[str, object] = {"name": name, "commission_bps": commission_bps}
        if before is not None:
            details["previous"] = {"name": before.name, "commission_bps": before.commission_bps}
        oplog.record(
            session,
            actor=actor,
            action="agency.put",
            subject_type="agency",
            subject_id=agency_id,
            reason=None,
            details=details,
            now=now,
        )
    return get_agency(session, agency_id)


# ---------------------------------------------------------------------------------------------
# Accounts


def user_account(
    session: Session,
    user_id: str,
    *,
    kind: str,
    asset: str = DIAMOND,
    now: datetime | None = None,
) -> ledger.Account:
    """The user's `kind` account in `asset`, opened on first use (no overdraft, ever).

    The user row must exist (`ensure_user`); `wallet_account` and `earnings_account` see to it.
    """
    return ledger.open_account(
        session,
        asset=asset,
        owner_type="user",
        owner_id=user_id,
        kind=kind,
        flags=OWNED_FLAGS,
        now=now,
    )


def wallet_account(session: Session, user_id: str, asset: str = DIAMOND) -> ledger.Account:
    """The user's spendable wallet in `asset`; the user comes into being if new."""
    ensure_user(session, user_id)
    return user_account(session, user_id, kind="wallet", asset=asset)


def earnings_account(session: Session, user_id: str, asset: str = DIAMOND) -> ledger.Account:
    """What the user earned as a host (gifts, calls) in `asset`; the user comes into being
    if new."""
    ensure_user(session, user_id)
    return user_account(session, user_id, kind="earnings", asset=asset)


def agency_account(
    session: Session, agency_id: str, *, asset: str = DIAMOND, kind: str = "earnings"
) -> ledger.Account:
    """The agency's commission account (no overdraft). The agency must exist."""
    get_agency(session, agency_id)
    return ledger.open_account(
        session, asset=asset, owner_type="agency", owner_id=agency_id, kind=kind, flags=OWNED_FLAGS
    )


def platform_account(session: Session, *, kind: str, asset: str) -> ledger.Account:
    """The platform's own account (`revenue`, `fees`, `escrow`, `payouts`...), no flag."""
    return ledger.open_account(
        session,
        asset=asset,
        owner_type="platform",
        owner_id=PLATFORM_OWNER_ID,
        kind=kind,
        flags=PLATFORM_FLAGS,
    )


def system_account(session: Session, *, kind: str, asset: str) -> ledger.Account:
    """Where money enters and leaves the books (`issuance`...): may go below zero."""
    return ledger.open_account(
        session,
        asset=asset,
        owner_type="system",
        owner_id=PLATFORM_OWNER_ID,
        kind=kind,
        flags=PLATFORM_FLAGS,
    )


def provider_account(
    session: Session, provider: str, *, asset: str, kind: str = "clearing"
) -> ledger.Account:
    """A payment provider's clearing account: what it owes us or we owe it; may go below zero."""
    return ledger.open_account(
        session,
        asset=asset,
        owner_type="provider",
        owner_id=provider,
        kind=kind,
        flags=PLATFORM_FLAGS,
    )


def account_balances(session: Session, user_id: str) -> list[AccountBalance]:
    """Every account the user owns, in the order they were opened."""
    return [
        AccountBalance.of(account)
        for account in ledger.accounts_of_owner(session, owner_type="user", owner_id=user_id)
    ]
