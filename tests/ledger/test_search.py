"""The operators' search and summaries: pages and totals agree with a brute-force reading of
every transfer, whatever the range cuts, and the running totals survive `verify`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coffer import ledger
from coffer.db import Database
from coffer.ledger import search
from coffer.ledger.errors import InvalidTransfer
from tests.ledger.books import assert_clean, reset_ledger
from tests.ledger.factories import define_assets, system, wallet

START = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)
TYPES = ("gift", "fee", "purchase")

moves = st.lists(
    st.tuples(
        st.integers(0, 3 * 24 * 60),  # minutes after START (sorted below)
        st.sampled_from(TYPES),
        st.integers(1, 50),
        st.booleans(),  # alice -> bob, or bob -> alice
    ),
    min_size=1,
    max_size=25,
)
bounds = st.one_of(st.none(), st.integers(-60, 4 * 24 * 60))


def _at(minutes: int) -> datetime:
    return START + timedelta(minutes=minutes)


@settings(max_examples=25, deadline=None)
@given(made=moves, low=bounds, high=bounds, user_only=st.booleans())
def test_summary_and_pages_match_every_transfer(
    db: Database,
    made: list[tuple[int, str, int, bool]],
    low: int | None,
    high: int | None,
    user_only: bool,
) -> None:
    reset_ledger(db)
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        source = system(s)
        ledger.transfer(
            s,
            debit_account_id=source.id,
            credit_account_id=alice.id,
            amount=10_000,
            type="purchase",
            now=START - timedelta(days=1),
        )
        ledger.transfer(
            s,
            debit_account_id=source.id,
            credit_account_id=bob.id,
            amount=10_000,
            type="purchase",
            now=START - timedelta(days=1),
        )
    for minutes, type_, amount, forward in sorted(made):
        debit, credit = (alice, bob) if forward else (bob, alice)
        with db.unit_of_work() as s:
            ledger.transfer(
                s,
                debit_account_id=debit.id,
                credit_account_id=credit.id,
                amount=amount,
                type=type_,
                now=_at(minutes),
            )
    created_from = None if low is None else _at(low)
    created_to = None if high is None else _at(high)
    if created_from and created_to and created_to < created_from:
        created_from, created_to = created_to, created_from
    filters = search.Filters(
        account_ids=[bob.id] if user_only else None,
        created_from=created_from,
        created_to=created_to,
    )
    with db.read() as s:
        everything = ledger.history(s, account_id=source.id, limit=500).transfers
        for account in (alice, bob):
            everything += ledger.history(s, account_id=account.id, limit=500).transfers
    unique = {t.id: t for t in everything}
    wanted = sorted(
        (
            t
            for t in unique.values()
            if (created_from is None or t.created_at >= created_from)
            and (created_to is None or t.created_at < created_to)
            and (not user_only or bob.id in (t.debit_account_id, t.credit_account_id))
        ),
        key=lambda t: -t.id,
    )
    expected: dict[tuple[str, str, str], list[int]] = {}
    for t in wanted:
        line = expected.setdefault((t.asset, t.type, "posted"), [0, 0])
        line[0] += 1
        line[1] += t.amount
    with db.read() as s:
        got = {(x.asset, x.type, x.status): [x.count, x.amount] for x in search.summary(s, filters)}
        seen: list[int] = []
        before = None
        while True:
            page = search.search(s, filters, limit=4, before_id=before)
            seen += [t.id for t in page.transfers]
            if page.next_before_id is None:
                break
            before = page.next_before_id
    assert got == expected
    assert seen == [t.id for t in wanted]
    assert_clean(db)


def test_filters_by_type_status_and_asset(db: Database) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        ledger.transfer(
            s,
            debit_account_id=system(s).id,
            credit_account_id=alice.id,
            amount=100,
            type="purchase",
        )
        ledger.transfer(
            s, debit_account_id=alice.id, credit_account_id=bob.id, amount=7, type="gift"
        )
        hold = ledger.create_hold(
            s, debit_account_id=alice.id, credit_account_id=bob.id, amount=5, type="call_charge"
        )
        ledger.void_hold(s, hold_id=hold.id)
    with db.read() as s:
        gifts = search.search(s, search.Filters(types=["gift"]))
        pending = search.search(s, search.Filters(statuses=["pending"]))
        voided = search.summary(s, search.Filters(statuses=["voided"]))
        inr = search.search(s, search.Filters(asset="INR"))
        with pytest.raises(InvalidTransfer):
            search.search(s, search.Filters(statuses=["lost"]))
        nobody = search.search(s, search.Filters(account_ids=[]))
    assert [t.amount for t in gifts.transfers] == [7]
    assert [t.type for t in pending.transfers] == ["call_charge"]
    assert [(x.type, x.count, x.amount) for x in voided] == [("call_charge", 1, 5)]
    assert inr.transfers == [] and nobody.transfers == []
    assert_clean(db)


def test_verify_notices_a_running_total_that_disagrees(db: Database) -> None:
    from sqlalchemy import text

    with db.unit_of_work() as s:
        define_assets(s)
        alice = wallet(s, "alice")
        ledger.transfer(
            s,
            debit_account_id=system(s).id,
            credit_account_id=alice.id,
            amount=9,
            type="purchase",
        )
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE ledger_daily_totals SET amount = amount + 1"))
    with db.snapshot() as s:
        report = ledger.verify(s)
    assert not report.ok
    counters = next(c for c in report.checks if c.number == 2)
    assert any("daily total" in p for p in counters.problems)
