"""Every request the ledger refuses raises its own error class and code, and writes nothing.

"Nothing" is checked whole: every account's four counters, the transfer count, the chain head
(last id, hash and time) and every hold's status stay as they were, and `verify()` stays clean.
The cases run in a loop over one set of books per backend (a fresh database per case would
cost more than the cases), each in its own unit of work, which the error rolls back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm import Session

from coffer import ledger
from coffer.db import Database
from coffer.ledger import AccountFlags, Group, PostHold, Reversal, TransferRequest, VoidHold
from tests.ledger.books import assert_clean, state
from tests.ledger.factories import define_assets, fund, system, wallet

T0 = datetime(2032, 3, 1, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)  # after the short hold's timeout
UNKNOWN = 9_999_999


@dataclass(frozen=True)
class Books:
    alice: int
    bob: int
    rupees: int  # alice's INR wallet
    issuance: int
    receivable: int  # credits may never exceed its debits
    open_hold: int
    short_hold: int  # times out at T0 + 60 s
    posted_hold: int
    voided_hold: int
    expired_hold: int
    void: int  # the transfer that voided voided_hold
    expiry: int  # the transfer that expired expired_hold
    gift: int  # a posted transfer of 40, 15 of it reversed already
    keyed: int  # a transfer made with idempotency key "paid-1"


@pytest.fixture
def books(db: Database) -> Books:
    with db.unit_of_work() as s:
        define_assets(s)
        alice, bob = wallet(s, "alice"), wallet(s, "bob")
        rupees = wallet(s, "alice", asset="INR")
        issuance = system(s)
        receivable = ledger.open_account(
            s,
            asset="DIAMOND",
            owner_type="provider",
            owner_id="razorpay",
            kind="clearing",
            flags=AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
        )
        fund(s, alice, 1_000)
        fund(s, rupees, 500)

    def hold(amount: int, timeout_s: int | None = None) -> int:
        with db.unit_of_work() as s:
            made = ledger.create_hold(
                s,
                debit_account_id=alice.id,
                credit_account_id=bob.id,
                amount=amount,
                type="call_charge",
                timeout_s=timeout_s,
                now=T0,
            )
        return made.id

    open_hold, short_hold = hold(100), hold(50, timeout_s=60)
    posted_hold, voided_hold, expired_hold = hold(30), hold(20), hold(10, timeout_s=1)
    with db.unit_of_work() as s:
        ledger.post_hold(s, hold_id=posted_hold, amount=25, now=T0)
        void = ledger.void_hold(s, hold_id=voided_hold, now=T0)
        gift = ledger.transfer(
            s, debit_account_id=alice.id, credit_account_id=bob.id, amount=40, type="gift", now=T0
        )
        ledger.reverse(s, transfer_id=gift.id, amount=15, now=T0)
        keyed = ledger.transfer(
            s,
            debit_account_id=alice.id,
            credit_account_id=bob.id,
            amount=5,
            type="gift",
            metadata={"order": 1},
            idempotency_key="paid-1",
            now=T0,
        )
    with db.unit_of_work() as s:
        assert ledger.expire_holds(s, now=T0 + timedelta(seconds=2)) == 1
        expiry = ledger.get_transfer(s, keyed.id + 1)
    assert expiry.phase is ledger.Phase.EXPIRE_PENDING and expiry.pending_id == expired_hold
    return Books(
        alice=alice.id,
        bob=bob.id,
        rupees=rupees.id,
        issuance=issuance.id,
        receivable=receivable.id,
        open_hold=open_hold,
        short_hold=short_hold,
        posted_hold=posted_hold,
        voided_hold=voided_hold,
        expired_hold=expired_hold,
        void=void.id,
        expiry=expiry.id,
        gift=gift.id,
        keyed=keyed.id,
    )


Call = Callable[[Session, Books], object]


Case = tuple[str, Call, type[ledger.LedgerError]]


def _refused(db: Database, books: Books, cases: list[Case]) -> None:
    """Run each case; each must raise exactly its error and leave the books as they were."""
    before = state(db)
    for name, call, error in cases:
        outcome: object
        try:
            with db.unit_of_work() as s:
                outcome = call(s, books)
        except ledger.LedgerError as exc:
            outcome = exc
        assert isinstance(outcome, ledger.LedgerError), f"{name}: accepted {outcome}"
        assert type(outcome) is error, f"{name}: {outcome!r}, wanted {error.__name__}"
        assert outcome.code == error.code, name
        assert state(db) == before, f"{name} changed the books"
    assert_clean(db)


def _gift(amount: object = 10, **changes: Any) -> Call:
    def call(s: Session, b: Books) -> object:
        fields: dict[str, Any] = {
            "debit_account_id": b.alice,
            "credit_account_id": b.bob,
            "amount": amount,
            "type": "gift",
            "now": T0,
        }
        fields.update({k: (v(b) if callable(v) else v) for k, v in changes.items()})
        return ledger.transfer(s, **fields)

    return call


def _hold(amount: object, timeout_s: object = None) -> Call:
    def call(s: Session, b: Books) -> object:
        return ledger.create_hold(
            s,
            debit_account_id=b.alice,
            credit_account_id=b.bob,
            amount=amount,  # type: ignore[arg-type]
            type="call_charge",
            timeout_s=timeout_s,  # type: ignore[arg-type]
        )

    return call


def _post(amount: object) -> Call:
    return lambda s, b: ledger.post_hold(s, hold_id=b.open_hold, amount=amount)  # type: ignore[arg-type]


def _reverse(amount: object) -> Call:
    return lambda s, b: ledger.reverse(s, transfer_id=b.gift, amount=amount)  # type: ignore[arg-type]


BAD_AMOUNTS: list[object] = [
    0,
    -1,
    -(2**63),
    1.0,
    10.5,
    math.inf,
    Decimal(10),
    True,
    False,
    "10",
    None,
    ledger.AMOUNT_MAX + 1,
    2**63,
]


def test_bad_amounts_anywhere_are_refused(db: Database, books: Books) -> None:
    cases: list[Case] = []
    for amount in BAD_AMOUNTS:
        cases += [
            (f"transfer {amount!r}", _gift(amount), ledger.AmountInvalid),
            (f"hold {amount!r}", _hold(amount), ledger.AmountInvalid),
        ]
        if amount is None:
            continue  # posting or reversing None means "all of it"
        cases += [
            (f"post {amount!r}", _post(amount), ledger.AmountInvalid),
            (f"reverse {amount!r}", _reverse(amount), ledger.AmountInvalid),
        ]
    # The largest amount there is, is accepted by the shape check and refused by the funds.
    cases.append(("AMOUNT_MAX", _gift(ledger.AMOUNT_MAX), ledger.InsufficientFunds))
    _refused(db, books, cases)


def test_bad_accounts_are_refused(db: Database, books: Books) -> None:
    _refused(
        db,
        books,
        [
            ("same account", _gift(credit_account_id=lambda b: b.alice), ledger.SameAccount),
            ("mixed assets", _gift(credit_account_id=lambda b: b.rupees), ledger.AssetMismatch),
            ("unknown credit", _gift(credit_account_id=UNKNOWN), ledger.AccountNotFound),
            ("unknown debit", _gift(debit_account_id=UNKNOWN), ledger.AccountNotFound),
            ("account id 0", _gift(credit_account_id=0), ledger.InvalidTransfer),
            ("negative id", _gift(debit_account_id=-1), ledger.InvalidTransfer),
            ("id as text", _gift(credit_account_id=lambda b: str(b.bob)), ledger.InvalidTransfer),
            ("id as bool", _gift(credit_account_id=True), ledger.InvalidTransfer),
            ("overdraft", _gift(1_000), ledger.InsufficientFunds),
            (
                "over-credit",
                _gift(
                    1,
                    debit_account_id=lambda b: b.issuance,
                    credit_account_id=lambda b: b.receivable,
                ),
                ledger.ExceedsCredits,
            ),
            (
                "counter overflow",
                # 1,025 maximal debits pass 2**63 - 1 on the issuance account's debits_posted.
                lambda s, b: ledger.execute(
                    s,
                    [TransferRequest(b.issuance, b.bob, ledger.AMOUNT_MAX, "bonus")] * 1_025,
                    now=T0,
                ),
                ledger.Overflow,
            ),
            (
                "linked group, second member overdraws",
                lambda s, b: ledger.execute(
                    s,
                    [
                        TransferRequest(b.alice, b.bob, 10, "gift"),
                        TransferRequest(b.alice, b.issuance, 10_000, "fee"),
                    ],
                    now=T0,
                ),
                ledger.InsufficientFunds,
            ),
            (
                "linked group, last member names an unknown account",
                lambda s, b: ledger.execute(
                    s,
                    [
                        TransferRequest(b.alice, b.bob, 10, "gift"),
                        TransferRequest(b.bob, UNKNOWN, 1, "fee"),
                    ],
                    now=T0,
                ),
                ledger.AccountNotFound,
            ),
        ],
    )


def test_hold_misuse_is_refused(db: Database, books: Books) -> None:
    def post(hold: str, amount: int | None = None, when: datetime = T0) -> Call:
        return lambda s, b: ledger.post_hold(s, hold_id=getattr(b, hold), amount=amount, now=when)

    def void(hold: str, when: datetime = T0) -> Call:
        return lambda s, b: ledger.void_hold(s, hold_id=getattr(b, hold), now=when)

    def both(first: object, second: object) -> Call:
        return lambda s, b: ledger.execute(s, [first(b), second(b)], now=T0)  # type: ignore[operator]

    _refused(
        db,
        books,
        [
            ("post more than held", post("open_hold", 101), ledger.PostExceedsHold),
            ("post a posted hold", post("posted_hold"), ledger.HoldResolved),
            ("void a posted hold", void("posted_hold"), ledger.HoldResolved),
            ("post a voided hold", post("voided_hold"), ledger.HoldResolved),
            ("void a voided hold", void("voided_hold"), ledger.HoldResolved),
            ("post an expired hold", post("expired_hold"), ledger.HoldResolved),
            ("void an expired hold", void("expired_hold"), ledger.HoldResolved),
            # The release that goes with HoldExpired is rolled back with the caller's work.
            ("post past its timeout", post("short_hold", when=LATER), ledger.HoldExpired),
            ("void past its timeout", void("short_hold", when=LATER), ledger.HoldExpired),
            (
                "post then void in one group",
                both(lambda b: PostHold(b.open_hold), lambda b: VoidHold(b.open_hold)),
                ledger.HoldResolved,
            ),
            (
                "void then post in one group",
                both(lambda b: VoidHold(b.open_hold), lambda b: PostHold(b.open_hold, 1)),
                ledger.HoldResolved,
            ),
            (
                "post twice in one group",
                both(lambda b: PostHold(b.open_hold, 1), lambda b: PostHold(b.open_hold, 1)),
                ledger.HoldResolved,
            ),
            (
                "post an unknown hold",
                lambda s, b: ledger.post_hold(s, hold_id=UNKNOWN),
                ledger.HoldNotFound,
            ),
            (
                "post a transfer that is not a hold",
                lambda s, b: ledger.post_hold(s, hold_id=b.gift),
                ledger.HoldNotFound,
            ),
            ("hold id 0", lambda s, b: ledger.void_hold(s, hold_id=0), ledger.InvalidTransfer),
            (
                "timeout on a posted transfer",
                lambda s, b: ledger.execute(
                    s, [TransferRequest(b.alice, b.bob, 1, "gift", timeout_s=60)]
                ),
                ledger.InvalidTransfer,
            ),
            *[
                (f"timeout_s {timeout!r}", _hold(1, timeout_s=timeout), ledger.InvalidTransfer)
                for timeout in (0, -1, 30 * 24 * 3600 + 1, 1.5, True, "60")
            ],
            (
                "hold beyond what is available",
                lambda s, b: ledger.create_hold(
                    s, debit_account_id=b.alice, credit_account_id=b.bob, amount=831, type="x"
                ),
                ledger.InsufficientFunds,
            ),
        ],
    )


def test_reversal_misuse_is_refused(db: Database, books: Books) -> None:
    def rev(attr: str, amount: int | None = None) -> Call:
        return lambda s, b: ledger.reverse(s, transfer_id=getattr(b, attr), amount=amount, now=T0)

    _refused(
        db,
        books,
        [
            ("more than is left", rev("gift", 26), ledger.ReversalExceeds),
            ("a pending transfer", rev("open_hold"), ledger.ReversalExceeds),
            ("a void", rev("void"), ledger.ReversalExceeds),
            ("an expiry", rev("expiry"), ledger.ReversalExceeds),
            (
                "an unknown transfer",
                lambda s, b: ledger.reverse(s, transfer_id=UNKNOWN),
                ledger.TransferNotFound,
            ),
            (
                "left twice in one group",
                lambda s, b: ledger.execute(s, [Reversal(b.gift, 20), Reversal(b.gift, 20)]),
                ledger.ReversalExceeds,
            ),
            (
                "bad reversal type",
                lambda s, b: ledger.reverse(s, transfer_id=b.gift, type="Refund"),
                ledger.InvalidTransfer,
            ),
        ],
    )


class _Opaque:
    pass


def test_bad_metadata_types_keys_and_groups_are_refused(db: Database, books: Books) -> None:
    bad = ledger.InvalidTransfer
    cases: list[Case] = [
        ("metadata object()", _gift(metadata={"x": _Opaque()}), bad),
        ("metadata bytes", _gift(metadata={"x": b"raw"}), bad),
        ("metadata set", _gift(metadata={"x": {1, 2}}), bad),
        ("metadata NaN", _gift(metadata={"x": math.nan}), bad),
        ("metadata infinity", _gift(metadata={"x": math.inf}), bad),
        ("metadata mixed keys", _gift(metadata={1: "a", "b": 2}), bad),
        ("metadata tuple key", _gift(metadata={(1, 2): "a"}), bad),
        ("metadata a list", _gift(metadata=["a"]), bad),
        ("metadata a string", _gift(metadata="{}"), bad),
        ("metadata too large", _gift(metadata={"x": "a" * 8_200}), bad),
        ("metadata too large escaped", _gift(metadata={"x": "\u00e9" * 1_400}), bad),
    ]
    for type_ in ("", "Gift", "gift!", "gift ", " gift", "gift\n", "1gift", "x" * 33, None, 5):
        cases.append((f"type {type_!r}", _gift(type=type_), bad))
    for key in ("", "k" * 256, "a\nb", "tab\there", "\x00", 5, b"key"):
        cases.append((f"key {key!r}", _gift(idempotency_key=key), bad))
    for source in ("", "s" * 65, "a\u2028b", None):
        cases.append((f"source {source!r}", _gift(source=source), bad))
    cases += [
        ("empty group", lambda s, b: ledger.execute(s, []), bad),
        ("not an operation", lambda s, b: ledger.execute(s, [object()]), bad),  # type: ignore[list-item]
        (
            "one key twice in a group",
            lambda s, b: ledger.execute(
                s,
                [
                    TransferRequest(b.alice, b.bob, 1, "gift", idempotency_key="twice"),
                    TransferRequest(b.alice, b.bob, 2, "gift", idempotency_key="twice"),
                ],
            ),
            bad,
        ),
        (
            "a good member beside a bad one",
            lambda s, b: ledger.execute(
                s,
                [
                    TransferRequest(b.alice, b.bob, 1, "gift"),
                    TransferRequest(b.alice, b.bob, 0, "gift"),
                ],
            ),
            ledger.AmountInvalid,
        ),
        (
            "key reused with another amount",
            _gift(6, metadata={"order": 1}, idempotency_key="paid-1"),
            ledger.IdempotencyConflict,
        ),
        (
            "key reused with other metadata",
            _gift(5, metadata={"order": 2}, idempotency_key="paid-1"),
            ledger.IdempotencyConflict,
        ),
        (
            "key reused beside a new one",
            lambda s, b: ledger.execute(
                s,
                [
                    TransferRequest(b.alice, b.bob, 5, "gift", {"order": 1}, "paid-1"),
                    TransferRequest(b.alice, b.bob, 5, "gift", None, "paid-2"),
                ],
            ),
            ledger.IdempotencyConflict,
        ),
    ]
    _refused(db, books, cases)
    # Limits are inclusive: the longest key, type and source, and metadata right at the cap.
    with db.unit_of_work() as s:
        made = ledger.transfer(
            s,
            debit_account_id=books.alice,
            credit_account_id=books.bob,
            amount=1,
            type="x" * 32,
            idempotency_key="k" * 255,
            source="s" * 64,
            metadata={"x": "a" * (8 * 1024 - 8)},  # {"x":"…"} is 8 characters around it
        )
    assert len(made.idempotency_key or "") == 255
    assert_clean(db)


def test_refused_groups_in_a_batch_write_nothing_of_their_own(db: Database, books: Books) -> None:
    """execute_many: every group refused, so not one row is written, not even the chain head."""
    before = state(db)
    with db.unit_of_work() as s:
        results = ledger.execute_many(
            s,
            [
                Group([TransferRequest(books.alice, books.alice, 1, "gift")]),
                Group([TransferRequest(books.alice, books.bob, 10_000, "gift")]),
                Group([TransferRequest(books.alice, books.rupees, 1, "gift")]),
                Group([PostHold(books.posted_hold)]),
                Group([Reversal(books.gift, 100)]),
                Group([]),
            ],
            now=T0,
        )
    assert [type(r) for r in results] == [
        ledger.SameAccount,
        ledger.InsufficientFunds,
        ledger.AssetMismatch,
        ledger.HoldResolved,
        ledger.ReversalExceeds,
        ledger.InvalidTransfer,
    ]
    assert state(db) == before
    assert_clean(db)
