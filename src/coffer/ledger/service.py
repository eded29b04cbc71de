"""The ledger's public operations. Each takes the caller's session and never commits.

Moving money in the caller's transaction takes the ledger's write lock (the chain head) until
that transaction ends, so callers keep the ledger call last and commit promptly. High-volume
callers submit through `batch.Batcher` instead, which shares one transaction among many.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from coffer.ledger import repository as repo
from coffer.ledger.errors import (
    AccountNotFound,
    AssetNotFound,
    HoldNotFound,
    InvalidTransfer,
    LedgerError,
    TransferNotFound,
)
from coffer.ledger.posting import GroupResult, apply_groups, books_time, expire_due_holds
from coffer.ledger.types import (
    DEFAULT_SOURCE,
    Account,
    AccountFlags,
    Asset,
    Group,
    Hold,
    Operation,
    PostHold,
    Reversal,
    Transfer,
    TransferRequest,
    VoidHold,
)

Clock = Callable[[], datetime]
_OWNER_TYPES = frozenset({"user", "agency", "platform", "provider", "system"})
EXPIRE_BATCH_MAX = 1_000


def utc_now() -> datetime:
    return datetime.now(UTC)


def _clock(now: datetime | None) -> Clock:
    if now is None:
        return utc_now
    assert now.tzinfo is not None, "the ledger's clock is UTC-aware"
    return lambda: now


# ---------------------------------------------------------------------------------------------
# Assets and accounts


def define_asset(session: Session, *, code: str, scale: int, now: datetime | None = None) -> Asset:
    """Make an asset known (idempotent); a second definition with another scale is refused."""
    if not (isinstance(code, str) and code.isascii() and code.isupper() and 0 < len(code) <= 16):
        raise InvalidTransfer("asset code must be 1 to 16 upper-case ASCII characters", code=code)
    if type(scale) is not int or not 0 <= scale <= 18:
        raise InvalidTransfer("asset scale must be an integer from 0 to 18", scale=scale)
    conn = session.connection()
    repo.insert_asset_if_absent(conn, code=code, scale=scale, now=_clock(now)())
    asset = repo.get_asset(conn, code)
    assert asset is not None
    if asset.scale != scale:
        raise InvalidTransfer(
            f"asset {code} exists with scale {asset.scale}", code=code, scale=asset.scale
        )
    return asset


def get_asset(session: Session, code: str) -> Asset:
    asset = repo.get_asset(session.connection(), code)
    if asset is None:
        raise AssetNotFound(f"asset {code} is not defined", asset=code)
    return asset


def list_assets(session: Session) -> list[Asset]:
    return repo.list_assets(session.connection())


def open_account(
    session: Session,
    *,
    asset: str,
    owner_type: str,
    owner_id: str,
    kind: str,
    flags: AccountFlags = AccountFlags.NONE,
    now: datetime | None = None,
) -> Account:
    """The account for (asset, owner, kind), made on first use; concurrent openers agree."""
    if owner_type not in _OWNER_TYPES:
        raise InvalidTransfer(f"owner_type must be one of {sorted(_OWNER_TYPES)}")
    if not (isinstance(owner_id, str) and 0 < len(owner_id) <= 64 and owner_id.isprintable()):
        raise InvalidTransfer("owner_id must be 1 to 64 printable characters", field="owner_id")
    if not (isinstance(kind, str) and 0 < len(kind) <= 32 and kind.isidentifier()):
        raise InvalidTransfer("kind must be 1 to 32 identifier characters", field="kind")
    conn = session.connection()
    found = repo.find_account(
        conn, asset=asset, owner_type=owner_type, owner_id=owner_id, kind=kind
    )
    if found is None:
        if repo.get_asset(conn, asset) is None:
            raise AssetNotFound(f"asset {asset} is not defined", asset=asset)
        repo.insert_account_if_absent(
            conn,
            asset=asset,
            owner_type=owner_type,
            owner_id=owner_id,
            kind=kind,
            flags=int(flags),
            now=_clock(now)(),
        )
        found = repo.find_account(
            conn, asset=asset, owner_type=owner_type, owner_id=owner_id, kind=kind
        )
        assert found is not None
    if found.flags != flags:
        raise InvalidTransfer(
            "the account exists with other flags",
            account_id=found.id,
            flags=int(found.flags),
        )
    return found


def find_accounts(
    session: Session, keys: Sequence[tuple[str, str, str, str]]
) -> dict[tuple[str, str, str, str], Account]:
    """The accounts that exist among (asset, owner_type, owner_id, kind) keys, in one read."""
    return repo.find_accounts(session.connection(), keys)


def find_account(
    session: Session, *, asset: str, owner_type: str, owner_id: str, kind: str
) -> Account | None:
    return repo.find_account(
        session.connection(), asset=asset, owner_type=owner_type, owner_id=owner_id, kind=kind
    )


def get_account(session: Session, account_id: int) -> Account:
    """The account with its counters, read from its row: O(1), whatever its history."""
    found = repo.get_accounts(session.connection(), [account_id]).get(account_id)
    if found is None:
        raise AccountNotFound(f"account {account_id} does not exist", account_id=account_id)
    return found


def get_accounts(session: Session, account_ids: Sequence[int]) -> dict[int, Account]:
    return repo.get_accounts(session.connection(), account_ids)


def accounts_of_owner(session: Session, *, owner_type: str, owner_id: str) -> list[Account]:
    return repo.accounts_of_owner(session.connection(), owner_type=owner_type, owner_id=owner_id)


# ---------------------------------------------------------------------------------------------
# Moving money


def execute_many(
    session: Session, groups: Sequence[Group], *, now: datetime | None = None
) -> list[GroupResult]:
    """Apply several independent linked groups; one result (transfers or error) per group."""
    return apply_groups(session.connection(), groups, clock=_clock(now))


def execute(
    session: Session,
    operations: Sequence[Operation],
    *,
    source: str = DEFAULT_SOURCE,
    now: datetime | None = None,
) -> list[Transfer]:
    """Apply linked operations, all or none; raises the error that refused them."""
    (result,) = execute_many(session, [Group(tuple(operations), source)], now=now)
    if isinstance(result, LedgerError):
        raise result
    return result


def transfer(
    session: Session,
    *,
    debit_account_id: int,
    credit_account_id: int,
    amount: int,
    type: str,
    metadata: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    source: str = DEFAULT_SOURCE,
    now: datetime | None = None,
) -> Transfer:
    """Move `amount` minor units from the debit account to the credit account."""
    request = TransferRequest(
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        type=type,
        metadata=metadata,
        idempotency_key=idempotency_key,
    )
    (made,) = execute(session, [request], source=source, now=now)
    return made


def create_hold(
    session: Session,
    *,
    debit_account_id: int,
    credit_account_id: int,
    amount: int,
    type: str,
    timeout_s: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    source: str = DEFAULT_SOURCE,
    now: datetime | None = None,
) -> Transfer:
    """Reserve `amount` on the debit account until posted, voided, or `timeout_s` passes."""
    request = TransferRequest(
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        type=type,
        metadata=metadata,
        idempotency_key=idempotency_key,
        pending=True,
        timeout_s=timeout_s,
    )
    (made,) = execute(session, [request], source=source, now=now)
    return made


def post_hold(
    session: Session,
    *,
    hold_id: int,
    amount: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    source: str = DEFAULT_SOURCE,
    now: datetime | None = None,
) -> Transfer:
    """Post a hold in full or in part; whatever is not posted is released."""
    operation = PostHold(
        hold_id=hold_id, amount=amount, metadata=metadata, idempotency_key=idempotency_key
    )
    (made,) = execute(session, [operation], source=source, now=now)
    return made


def void_hold(
    session: Session,
    *,
    hold_id: int,
    metadata: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    source: str = DEFAULT_SOURCE,
    now: datetime | None = None,
) -> Transfer:
    """Release a hold; nothing is posted."""
    operation = VoidHold(hold_id=hold_id, metadata=metadata, idempotency_key=idempotency_key)
    (made,) = execute(session, [operation], source=source, now=now)
    return made


def reverse(
    session: Session,
    *,
    transfer_id: int,
    amount: int | None = None,
    type: str = "reversal",
    metadata: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    source: str = DEFAULT_SOURCE,
    now: datetime | None = None,
) -> Transfer:
    """Undo a posted transfer (in full, or part of what is left) with a new one the other way."""
    operation = Reversal(
        transfer_id=transfer_id,
        amount=amount,
        type=type,
        metadata=metadata,
        idempotency_key=idempotency_key,
    )
    (made,) = execute(session, [operation], source=source, now=now)
    return made


def has_expired_holds(session: Session, *, now: datetime | None = None) -> bool:
    """Whether any open hold is past its timeout at the books' time (a read: no lock).

    The books' time is `now`, or the last transfer's time when that is later (time never runs
    backwards in the books): the same time the sweep itself expires holds at, so a caller whose
    clock lags the books finds what the sweep would release.
    """
    conn = session.connection()
    at = books_time(repo.read_chain(conn), _clock(now)())
    return bool(repo.expired_open_holds(conn, now=at, limit=1))


def expire_holds(
    session: Session, *, now: datetime | None = None, limit: int = EXPIRE_BATCH_MAX
) -> int:
    """The sweep: release up to `limit` holds past their timeout; returns how many.

    It looks before it locks: a sweep with nothing due takes no write lock, so running it
    every few seconds costs every other writer nothing.
    """
    assert 0 < limit <= EXPIRE_BATCH_MAX * 10
    clock = _clock(now)
    if not has_expired_holds(session, now=clock()):
        return 0
    return expire_due_holds(session.connection(), clock=clock, limit=limit)


# ---------------------------------------------------------------------------------------------
# Single reads


def get_transfer(session: Session, transfer_id: int) -> Transfer:
    found = repo.get_transfers(session.connection(), [transfer_id]).get(transfer_id)
    if found is None:
        raise TransferNotFound(f"transfer {transfer_id} does not exist", transfer_id=transfer_id)
    return found


def find_by_idempotency(
    session: Session, *, source: str, keys: Sequence[str]
) -> dict[str, Transfer]:
    """The transfers made under these idempotency keys of `source`, by key."""
    found = repo.transfers_by_idempotency(session.connection(), [(source, k) for k in keys])
    return {key: made for (_, key), made in found.items()}


def get_hold(session: Session, hold_id: int) -> Hold:
    found = repo.get_hold(session.connection(), hold_id)
    if found is None:
        raise HoldNotFound(f"hold {hold_id} does not exist", hold_id=hold_id)
    return found
