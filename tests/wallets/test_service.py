"""Users, agencies and their ledger accounts, at the service level."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from coffer import ledger, wallets
from coffer.config import DIAMOND, ShopConfig
from coffer.db import Database
from coffer.errors import NotFound, ValidationFailed

OWNED = ledger.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS


@pytest.fixture
def shop_db(db: Database) -> Database:
    with db.unit_of_work() as session:
        wallets.define_assets(session, ShopConfig())
    return db


def test_define_assets_is_idempotent(db: Database) -> None:
    for _ in range(2):
        with db.unit_of_work() as session:
            defined = wallets.define_assets(session, ShopConfig())
    assert {(a.code, a.scale) for a in defined} == {
        ("DIAMOND", 0),
        ("HTG", 2),
        ("INR", 2),
        ("USD", 2),
    }


def test_ensure_user_opens_wallet_and_earnings(shop_db: Database) -> None:
    with shop_db.unit_of_work() as session:
        user = wallets.ensure_user(session, "u1")
        again = wallets.ensure_user(session, "u1")
        accounts = ledger.accounts_of_owner(session, owner_type="user", owner_id="u1")
    assert user == again
    assert sorted((a.kind, a.asset, a.flags) for a in accounts) == [
        ("earnings", DIAMOND, OWNED),
        ("wallet", DIAMOND, OWNED),
    ]


@pytest.mark.parametrize("user_id", ["", "a b", "x" * 65, "ü", "a/b"])
def test_ensure_user_refuses_bad_ids(shop_db: Database, user_id: str) -> None:
    with shop_db.unit_of_work() as session, pytest.raises(ValidationFailed):
        wallets.ensure_user(session, user_id)


def test_ensure_user_needs_the_assets(db: Database) -> None:
    with db.unit_of_work() as session, pytest.raises(ledger.AssetNotFound):
        wallets.ensure_user(session, "u1")


def test_accounts_for_coordinators(shop_db: Database) -> None:
    with shop_db.unit_of_work() as session:
        wallet = wallets.wallet_account(session, "u1", "INR")
        earnings = wallets.earnings_account(session, "u1")
        platform = wallets.platform_account(session, kind="revenue", asset="INR")
        system = wallets.system_account(session, kind="issuance", asset=DIAMOND)
        clearing = wallets.provider_account(session, "razorpay", asset="INR")
        assert wallets.wallet_account(session, "u1", "INR") == wallet
    assert (wallet.owner_type, wallet.kind, wallet.asset, wallet.flags) == (
        "user", "wallet", "INR", OWNED,
    )  # fmt: skip
    assert (earnings.kind, earnings.asset, earnings.flags) == ("earnings", DIAMOND, OWNED)
    assert (platform.owner_type, platform.flags) == ("platform", ledger.AccountFlags.NONE)
    assert (system.owner_type, system.owner_id, system.flags) == (
        "system", "coffer", ledger.AccountFlags.NONE,
    )  # fmt: skip
    assert (clearing.owner_type, clearing.owner_id, clearing.kind) == (
        "provider", "razorpay", "clearing",
    )  # fmt: skip


def test_user_accounts_never_overdraw(shop_db: Database) -> None:
    with shop_db.unit_of_work() as session:
        wallet = wallets.wallet_account(session, "u1")
        revenue = wallets.platform_account(session, kind="revenue", asset=DIAMOND)
    with shop_db.unit_of_work() as session, pytest.raises(ledger.InsufficientFunds):
        ledger.transfer(
            session, debit_account_id=wallet.id, credit_account_id=revenue.id, amount=1,
            type="gift",
        )  # fmt: skip


def test_agencies(shop_db: Database) -> None:
    with shop_db.unit_of_work() as session:
        with pytest.raises(NotFound):
            wallets.agency_account(session, "a1")
        agency = wallets.put_agency(
            session, "a1", name="A", commission_bps=1_500, platform_fee_bps=2_000
        )
        account = wallets.agency_account(session, "a1")
        wallets.put_user(session, "host", display_name="Host", agency_id="a1")
        assert wallets.agency_of_user(session, "host") == agency
        assert wallets.agency_of_user(session, "nobody") is None
    assert (account.owner_type, account.owner_id, account.flags) == ("agency", "a1", OWNED)
    with shop_db.unit_of_work() as session, pytest.raises(ValidationFailed):
        wallets.put_agency(session, "a1", name="A", commission_bps=8_001, platform_fee_bps=2_000)


def test_concurrent_first_references_agree(shop_db: Database) -> None:
    threads = 8
    barrier = threading.Barrier(threads)

    def reference(_: int) -> int:
        barrier.wait()
        with shop_db.unit_of_work() as session:
            return wallets.wallet_account(session, "popular").id

    with ThreadPoolExecutor(max_workers=threads) as pool:
        ids = set(pool.map(reference, range(threads)))
    assert len(ids) == 1
    with shop_db.read() as session:
        accounts = ledger.accounts_of_owner(session, owner_type="user", owner_id="popular")
    assert len(accounts) == 2
