"""Reads across several accounts: entries (keyset pages) and totals per type."""

from __future__ import annotations

from coffer import ledger
from coffer.db import Database
from coffer.ledger import AccountFlags
from tests.ledger.factories import define_assets, fund, system, wallet


def test_entries_across_accounts_page_without_gaps_or_repeats(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        earnings = ledger.open_account(
            s,
            asset="DIAMOND",
            owner_type="user",
            owner_id="alice",
            kind="earnings",
            flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
        )
        fund(s, alice, 500)
        fund(s, bob, 500)
        for i in range(5):
            ledger.transfer(
                s, debit_account_id=bob.id, credit_account_id=earnings.id, amount=1 + i, type="gift"
            )
            ledger.transfer(
                s, debit_account_id=alice.id, credit_account_id=bob.id, amount=10 + i, type="gift"
            )
        # Between two of alice's own accounts: one transfer, two entries.
        ledger.transfer(
            s, debit_account_id=earnings.id, credit_account_id=alice.id, amount=3, type="convert"
        )
    seen = []
    cursor = None
    with db.read() as s:
        while True:
            page = ledger.entries(s, account_ids=[alice.id, earnings.id], limit=3, before=cursor)
            seen.extend(page.entries)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    keys = [(e.transfer.id, e.account_id) for e in seen]
    assert keys == sorted(keys, reverse=True) and len(keys) == len(set(keys))
    assert len(seen) == 1 + 5 + 5 + 2  # funding, gifts in, gifts out, both sides of convert
    convert = [e for e in seen if e.transfer.type == "convert"]
    assert sorted(e.amount for e in convert) == [-3, 3]
    with db.read() as s:
        totals = {
            (t.account_id, t.type): t for t in ledger.totals_by_type(s, account_ids=[alice.id])
        }
    gifts = totals[(alice.id, "gift")]
    assert (gifts.debits, gifts.debit_count, gifts.credits) == (60, 5, 0)
    assert totals[(alice.id, "purchase")].credits == 500
    with db.read() as s:
        assert ledger.get_account(s, alice.id).balance == 500 - 60 + 3
        assert ledger.get_account(s, system(s).id).balance == -1000
