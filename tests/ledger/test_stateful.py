"""The ledger against a plain-Python model, driven by random sequences of everything it does.

A Hypothesis state machine opens accounts (users with the no-overdraft flag, system accounts
without, on two assets), moves money alone, in linked groups and in `execute_many` batches that
mix good and bad groups, makes holds with timeouts and posts (in full or in part), voids and
expires them under a fake clock that sometimes runs backwards, sweeps, reverses (in part, in
full, too much), replays idempotent requests and reuses their keys with other content. After
every step the books must pass `verify()` and equal the model row for row: every transfer's
columns (ids, balances after, times), every hold, every account's four counters, the chain head.

Each run is small by default (well under a minute per backend). For a soak run:
    COFFER_LEDGER_EXAMPLES=500 COFFER_LEDGER_STEPS=80 .venv/bin/pytest tests/ledger/test_stateful.py
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from coffer import ledger
from coffer.db import Database
from coffer.ledger import (
    AccountFlags,
    Group,
    Operation,
    PostHold,
    Reversal,
    Transfer,
    TransferRequest,
    VoidHold,
)
from coffer.ledger import repository as repo
from coffer.ledger.tables import chain, holds
from tests.ledger.books import reset_ledger
from tests.ledger.model import Books, MHold, Outcome, transfer_key

EXAMPLES = int(os.environ.get("COFFER_LEDGER_EXAMPLES", "20"))
STEPS = int(os.environ.get("COFFER_LEDGER_STEPS", "50"))

# Long before the real clock: every call gets the machine's clock, and a wall-clock read
# anywhere in the ledger would stamp the books decades later than the model expects.
T0 = datetime(2001, 6, 1, tzinfo=UTC)
ASSETS = ("DIAMOND", "INR")
SOURCES = ("ledger", "app")
UNKNOWN_ID = 987_654
USERS_PER_ASSET_MAX = 5
TYPES = ("gift", "call_charge", "purchase", "escrow_hold", "fee")


class LedgerMachine(RuleBasedStateMachine):
    db: Database  # set by the test, per backend

    def __init__(self) -> None:
        super().__init__()
        reset_ledger(self.db)
        self.books = Books()
        self.clock = T0
        self.sequence = 0
        # (asset, owner_type, owner_id, kind) -> account id
        self.opened: dict[tuple[str, str, str, str], int] = {}
        # Groups that succeeded with idempotency keys: what replays and conflicts reuse.
        self.keyed: list[Group] = []

    # -- helpers ----------------------------------------------------------------------------

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    def _now(self, data: st.DataObject) -> datetime:
        # Callers' clocks disagree: sometimes a request arrives stamped before the last write.
        lag_s = data.draw(st.sampled_from([0, 0, 0, 0, 1, 90, 3600]), label="lag_s")
        return self.clock - timedelta(seconds=lag_s)

    def _open(
        self, s: Session, asset: str, owner_type: str, owner_id: str, kind: str
    ) -> ledger.Account:
        user = owner_type == "user"
        flags = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS if user else AccountFlags.NONE
        account = ledger.open_account(
            s,
            asset=asset,
            owner_type=owner_type,
            owner_id=owner_id,
            kind=kind,
            flags=flags,
            now=self.clock,
        )
        assert (account.asset, account.flags) == (asset, flags)
        self.opened[(asset, owner_type, owner_id, kind)] = account.id
        self.books.add_account(account.id, asset, no_overdraft=user)
        return account

    def _ids(self, books: Books, asset: str) -> list[int]:
        return sorted(a.id for a in books.accounts.values() if a.asset == asset)

    def _pass_timeouts(self, debit_account_id: int) -> None:
        """Move the clock past the timeouts of the open holds on this account."""
        deadlines = [
            h.expires_at
            for h in self.books.holds.values()
            if h.status == "open" and h.debit_account_id == debit_account_id and h.expires_at
        ]
        if deadlines:
            self.clock = max(self.clock, *deadlines)

    def _key(self, data: st.DataObject) -> str | None:
        return f"k{self._next()}" if data.draw(st.booleans(), label="keyed") else None

    def _metadata(self, data: st.DataObject) -> dict[str, Any] | None:
        if data.draw(st.integers(0, 2), label="metadata") == 0:
            return {"n": self._next(), "note": "model"}
        return None

    def _draw_transfer(
        self, data: st.DataObject, books: Books, *, pending: bool | None = None
    ) -> TransferRequest:
        fault = data.draw(
            st.sampled_from(["none"] * 12 + ["mixed", "same", "unknown", "amount", "type"]),
            label="fault",
        )
        asset = data.draw(st.sampled_from(ASSETS), label="asset")
        ids = self._ids(books, asset)
        debit = data.draw(st.sampled_from(ids), label="debit")
        credit = data.draw(st.sampled_from([i for i in ids if i != debit]), label="credit")
        amount: Any = data.draw(st.one_of(st.integers(1, 60), st.integers(61, 600)), label="amount")
        type_ = data.draw(st.sampled_from(TYPES), label="type")
        if fault == "mixed":
            other = next(a for a in ASSETS if a != asset)
            credit = data.draw(st.sampled_from(self._ids(books, other)), label="credit")
        elif fault == "same":
            credit = debit
        elif fault == "unknown":
            if data.draw(st.booleans(), label="unknown debit"):
                debit = UNKNOWN_ID
            else:
                credit = UNKNOWN_ID
        elif fault == "amount":
            amount = data.draw(
                st.sampled_from([0, -3, 2.0, True, "7", None, ledger.AMOUNT_MAX + 1]),
                label="bad amount",
            )
        elif fault == "type":
            type_ = data.draw(st.sampled_from(["", "Gift", "gift!", "x" * 33]), label="bad type")
        if pending is None:
            pending = data.draw(st.booleans(), label="pending")
        timeout_s = None
        if pending:
            timeout_s = data.draw(
                st.one_of(st.none(), st.sampled_from([1, 30, 60, 600]), st.integers(1, 900)),
                label="timeout_s",
            )
        return TransferRequest(
            debit_account_id=debit,
            credit_account_id=credit,
            amount=amount,
            type=type_,
            metadata=self._metadata(data),
            idempotency_key=self._key(data),
            pending=pending,
            timeout_s=timeout_s,
        )

    def _draw_hold(self, data: st.DataObject, books: Books) -> MHold | None:
        # Mostly open holds (the interesting ones), sometimes resolved ones, rarely none at all.
        open_ids = sorted(h.id for h in books.holds.values() if h.status == "open")
        any_ids = sorted(books.holds)
        pool = data.draw(st.sampled_from(["open"] * 6 + ["any"] * 2 + ["unknown"]), label="pool")
        ids = open_ids if pool == "open" and open_ids else any_ids
        if pool == "unknown" or not ids:
            return None
        return books.holds[data.draw(st.sampled_from(ids), label="hold")]

    def _draw_resolve(self, data: st.DataObject, books: Books) -> PostHold | VoidHold:
        hold = self._draw_hold(data, books)
        hold_id = UNKNOWN_ID if hold is None else hold.id
        if data.draw(st.integers(0, 2), label="void") == 0:
            return VoidHold(hold_id, self._metadata(data), self._key(data))
        amount = None
        if hold is not None and data.draw(st.booleans(), label="partial"):
            amount = data.draw(st.integers(1, hold.amount + 3), label="post amount")
        type_ = data.draw(st.sampled_from([None, None, "call_charge.final"]), label="post type")
        return PostHold(hold_id, amount, type_, self._metadata(data), self._key(data))

    def _draw_reversal(self, data: st.DataObject, books: Books) -> Reversal:
        ids = sorted(books.transfers)
        if not ids or data.draw(st.integers(0, 9), label="unknown transfer") == 0:
            return Reversal(UNKNOWN_ID)
        original = books.transfers[data.draw(st.sampled_from(ids), label="original")]
        amount = None
        if data.draw(st.booleans(), label="partial"):
            amount = data.draw(st.integers(1, original.amount + 3), label="reverse amount")
        type_ = data.draw(st.sampled_from(["reversal", "refund"]), label="reversal type")
        return Reversal(original.id, amount, type_, self._metadata(data), self._key(data))

    def _draw_op(self, data: st.DataObject, books: Books) -> Operation:
        kind = data.draw(
            st.sampled_from(["transfer"] * 4 + ["hold", "resolve", "resolve", "reverse"]),
            label="op",
        )
        if kind == "transfer":
            return self._draw_transfer(data, books, pending=False)
        if kind == "hold":
            return self._draw_transfer(data, books, pending=True)
        if kind == "resolve" and books.holds:
            return self._draw_resolve(data, books)
        return self._draw_reversal(data, books)

    def _remember(self, group: Group, outcome: Outcome) -> None:
        if (
            isinstance(outcome, list)
            and any(op.idempotency_key is not None for op in group.operations)
            and group not in self.keyed
        ):
            self.keyed.append(group)

    @staticmethod
    def _expect(outcome: Outcome, got: list[Transfer] | ledger.LedgerError) -> None:
        if isinstance(got, ledger.LedgerError):
            assert not isinstance(outcome, list), f"model made {outcome}, ledger said {got!r}"
            assert type(got) is outcome, f"model said {outcome.__name__}, ledger {got!r}"
            assert got.code == outcome.code
            return
        assert isinstance(outcome, list), f"model said {outcome.__name__}, ledger made {got}"
        assert [transfer_key(t) for t in got] == [row.key() for row in outcome]

    def _in_session(
        self, group: Group, now: datetime, call: Callable[[Session], Sequence[Transfer]]
    ) -> None:
        """One group through the in-session API, in its own unit of work."""
        outcome = self.books.run_in_session(group, now)
        got: list[Transfer] | ledger.LedgerError
        try:
            with self.db.unit_of_work() as s:
                got = list(call(s))
        except ledger.LedgerError as exc:
            got = exc
        self._expect(outcome, got)
        self._remember(group, outcome)

    # -- rules ------------------------------------------------------------------------------

    @initialize()
    def open_and_fund(self) -> None:
        with self.db.unit_of_work() as s:
            ledger.define_asset(s, code="DIAMOND", scale=0, now=self.clock)
            ledger.define_asset(s, code="INR", scale=2, now=self.clock)
            for asset in ASSETS:
                self._open(s, asset, "system", "coffer", "issuance")
                self._open(s, asset, "system", "coffer", "fees")
                for n in range(2):
                    self._open(s, asset, "user", f"u{n}", "wallet")
        for asset in ASSETS:
            issuance = self.opened[(asset, "system", "coffer", "issuance")]
            for n in range(2):
                user = self.opened[(asset, "user", f"u{n}", "wallet")]
                request = TransferRequest(issuance, user, 500, "purchase")

                def call(s: Session, r: TransferRequest = request) -> list[Transfer]:
                    return ledger.execute(s, [r], now=self.clock)

                self._in_session(Group((request,)), self.clock, call)

    @rule(data=st.data())
    def open_account(self, data: st.DataObject) -> None:
        asset = data.draw(st.sampled_from(ASSETS), label="asset")
        users = sorted(k for k in self.opened if k[0] == asset and k[1] == "user")
        choice = data.draw(st.sampled_from(["new user", "new system", "again", "flags"]))
        if choice == "new user" and len(users) < USERS_PER_ASSET_MAX:
            with self.db.unit_of_work() as s:
                self._open(s, asset, "user", f"u{len(users)}", "wallet")
        elif choice == "new system":
            kind = data.draw(st.sampled_from(["revenue", "clearing", "escrow"]), label="kind")
            with self.db.unit_of_work() as s:
                self._open(s, asset, "platform", "coffer", kind)
        else:
            key = data.draw(st.sampled_from(users), label="user")
            before = dict(self.opened)
            if choice == "flags":
                # The same account asked for with other flags is refused, and nothing is made.
                outcome: object = None
                try:
                    with self.db.unit_of_work() as s:
                        ledger.open_account(
                            s,
                            asset=key[0],
                            owner_type=key[1],
                            owner_id=key[2],
                            kind=key[3],
                            now=self.clock,
                        )
                except ledger.InvalidTransfer as exc:
                    outcome = exc
                assert isinstance(outcome, ledger.InvalidTransfer), "other flags were accepted"
                assert outcome.code == "validation_error"
            else:
                with self.db.unit_of_work() as s:
                    again = self._open(s, *key)
                assert again.id == before[key]

    @rule(data=st.data())
    def fund(self, data: st.DataObject) -> None:
        asset = data.draw(st.sampled_from(ASSETS), label="asset")
        users = sorted(v for k, v in self.opened.items() if k[0] == asset and k[1] == "user")
        user = data.draw(st.sampled_from(users), label="user")
        issuance = self.opened[(asset, "system", "coffer", "issuance")]
        amount = data.draw(st.integers(1, 800), label="amount")
        now = self._now(data)
        request = TransferRequest(issuance, user, amount, "purchase")
        self._in_session(
            Group((request,)),
            now,
            lambda s: [
                ledger.transfer(
                    s,
                    debit_account_id=issuance,
                    credit_account_id=user,
                    amount=amount,
                    type="purchase",
                    now=now,
                )
            ],
        )

    @rule(data=st.data())
    def transfer(self, data: st.DataObject) -> None:
        op = self._draw_transfer(data, self.books, pending=False)
        source = data.draw(st.sampled_from(SOURCES), label="source")
        now = self._now(data)
        self._in_session(
            Group((op,), source),
            now,
            lambda s: [
                ledger.transfer(
                    s,
                    debit_account_id=op.debit_account_id,
                    credit_account_id=op.credit_account_id,
                    amount=op.amount,
                    type=op.type,
                    metadata=op.metadata,
                    idempotency_key=op.idempotency_key,
                    source=source,
                    now=now,
                )
            ],
        )

    @rule(data=st.data())
    def create_hold(self, data: st.DataObject) -> None:
        op = self._draw_transfer(data, self.books, pending=True)
        now = self._now(data)
        self._in_session(
            Group((op,)),
            now,
            lambda s: [
                ledger.create_hold(
                    s,
                    debit_account_id=op.debit_account_id,
                    credit_account_id=op.credit_account_id,
                    amount=op.amount,
                    type=op.type,
                    timeout_s=op.timeout_s,
                    metadata=op.metadata,
                    idempotency_key=op.idempotency_key,
                    now=now,
                )
            ],
        )

    @rule(data=st.data())
    def resolve_hold(self, data: st.DataObject) -> None:
        op = self._draw_resolve(data, self.books)
        hold = self.books.holds.get(op.hold_id)
        if hold is not None and data.draw(st.integers(0, 3), label="time it out") == 0:
            self._pass_timeouts(hold.debit_account_id)
        now = self._now(data)

        def call(s: Session) -> list[Transfer]:
            if isinstance(op, VoidHold):
                return [
                    ledger.void_hold(
                        s,
                        hold_id=op.hold_id,
                        metadata=op.metadata,
                        idempotency_key=op.idempotency_key,
                        now=now,
                    )
                ]
            if op.type is not None:  # post_hold() has no `type`; execute() takes the operation
                return ledger.execute(s, [op], now=now)
            return [
                ledger.post_hold(
                    s,
                    hold_id=op.hold_id,
                    amount=op.amount,
                    metadata=op.metadata,
                    idempotency_key=op.idempotency_key,
                    now=now,
                )
            ]

        self._in_session(Group((op,)), now, call)

    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        op = self._draw_reversal(data, self.books)
        now = self._now(data)
        self._in_session(
            Group((op,)),
            now,
            lambda s: [
                ledger.reverse(
                    s,
                    transfer_id=op.transfer_id,
                    amount=op.amount,
                    type=op.type,
                    metadata=op.metadata,
                    idempotency_key=op.idempotency_key,
                    now=now,
                )
            ],
        )

    @rule(data=st.data())
    def linked_group(self, data: st.DataObject) -> None:
        size = data.draw(st.integers(2, 4), label="size")
        ops = tuple(self._draw_op(data, self.books) for _ in range(size))
        source = data.draw(st.sampled_from(SOURCES), label="source")
        now = self._now(data)
        self._in_session(
            Group(ops, source), now, lambda s: ledger.execute(s, ops, source=source, now=now)
        )

    @rule(data=st.data())
    def batch(self, data: st.DataObject) -> None:
        """`execute_many`: later groups may use holds and transfers that earlier ones made."""
        now = self._now(data)
        scratch = self.books.copy()
        model = scratch.begin(now)
        groups: list[Group] = []
        outcomes: list[Outcome] = []
        for _ in range(data.draw(st.integers(1, 5), label="groups")):
            if self.keyed and data.draw(st.integers(0, 5), label="replay") == 0:
                group = data.draw(st.sampled_from(self.keyed), label="replayed")
            else:
                size = data.draw(st.integers(1, 3), label="size")
                ops = tuple(self._draw_op(data, scratch) for _ in range(size))
                group = Group(ops, data.draw(st.sampled_from(SOURCES), label="source"))
            groups.append(group)
            outcomes.append(model.apply(group))
        model.finish()
        with self.db.unit_of_work() as s:
            results = ledger.execute_many(s, groups, now=now)
        assert len(results) == len(groups)
        for outcome, result in zip(outcomes, results, strict=True):
            self._expect(outcome, result)
        self.books = scratch
        for group, outcome in zip(groups, outcomes, strict=True):
            self._remember(group, outcome)

    @precondition(
        lambda self: any(a.no_overdraft and a.counters[2] for a in self.books.accounts.values())
    )
    @rule(data=st.data())
    def spend_posted_balance(self, data: st.DataObject) -> None:
        """Spend a held account's whole posted balance: it succeeds only if its holds have
        expired, which the ledger then releases on touch (or it is short, and nothing moves)."""
        held = sorted(i for i, a in self.books.accounts.items() if a.no_overdraft and a.counters[2])
        debit = data.draw(st.sampled_from(held), label="debit")
        account = self.books.accounts[debit]
        now = self._now(data)
        if data.draw(st.integers(0, 2), label="let its holds time out") > 0:
            self._pass_timeouts(debit)
            now = self.clock
        credit = self.opened[(account.asset, "system", "coffer", "fees")]
        amount = account.counters[1] - account.counters[0]
        request = TransferRequest(debit, credit, amount, "gift")
        if data.draw(st.booleans(), label="in a batch"):
            scratch = self.books.copy()
            (outcome,) = scratch.run([Group((request,))], now)
            with self.db.unit_of_work() as s:
                (result,) = ledger.execute_many(s, [Group((request,))], now=now)
            self._expect(outcome, result)
            self.books = scratch
        else:
            self._in_session(
                Group((request,)), now, lambda s: ledger.execute(s, [request], now=now)
            )

    @precondition(lambda self: bool(self.keyed))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """The same keys with the same content give back the same transfers, and write nothing."""
        group = data.draw(st.sampled_from(self.keyed), label="replayed")
        before = (self.books.next_id, self.books.head_time)
        now = self._now(data)
        self._in_session(
            group, now, lambda s: ledger.execute(s, group.operations, source=group.source, now=now)
        )
        # Fully keyed groups replay; a group with unkeyed members is a conflict. Neither writes.
        assert (self.books.next_id, self.books.head_time) == before

    @precondition(lambda self: bool(self.keyed))
    @rule(data=st.data())
    def reuse_key(self, data: st.DataObject) -> None:
        """A key used before with other content, or alongside a fresh one, is a conflict."""
        group = data.draw(st.sampled_from(self.keyed), label="group")
        keyed = [i for i, op in enumerate(group.operations) if op.idempotency_key is not None]
        index = data.draw(st.sampled_from(keyed), label="index")
        op = group.operations[index]
        if data.draw(st.booleans(), label="fresh sibling"):
            ops: tuple[Operation, ...] = (
                op,
                TransferRequest(
                    self.opened[("DIAMOND", "system", "coffer", "issuance")],
                    self.opened[("DIAMOND", "system", "coffer", "fees")],
                    1,
                    "fee",
                    idempotency_key=f"k{self._next()}",
                ),
            )
        else:
            changed: dict[str, Any] = {"metadata": {"conflict": self._next()}}
            ops = tuple(
                type(o)(**{**_fields(o), **changed}) if i == index else o
                for i, o in enumerate(group.operations)
            )
        before = (self.books.next_id, self.books.head_time)
        now = self._now(data)
        self._in_session(
            Group(ops, group.source),
            now,
            lambda s: ledger.execute(s, ops, source=group.source, now=now),
        )
        assert (self.books.next_id, self.books.head_time) == before

    @rule(data=st.data())
    def sweep(self, data: st.DataObject) -> None:
        limit = data.draw(st.integers(1, 4), label="limit")
        now = self._now(data)
        expected = self.books.sweep(now, limit)
        with self.db.unit_of_work() as s:
            assert ledger.expire_holds(s, now=now, limit=limit) == expected

    @rule(data=st.data())
    def advance_clock(self, data: st.DataObject) -> None:
        self.clock += timedelta(
            seconds=data.draw(st.sampled_from([0, 1, 29, 30, 60, 61, 300, 601, 3600]), label="s"),
            microseconds=data.draw(st.sampled_from([0, 0, 1, 999_999]), label="us"),
        )

    # -- after every step -------------------------------------------------------------------

    @invariant()
    def books_equal_the_model(self) -> None:
        with self.db.snapshot() as s:
            report = ledger.verify(s)
            assert report.ok, report.as_dict()
            conn = s.connection()
            stored = [transfer_key(repo.transfer_from_row(r)) for r in repo.stream_transfers(conn)]
            counters = {
                r.id: [r.debits_posted, r.credits_posted, r.debits_pending, r.credits_pending]
                for r in repo.stream_accounts(conn)
            }
            held = [repo.hold_from_row(r) for r in conn.execute(select(holds).order_by(holds.c.id))]
            head = conn.execute(select(chain.c.last_transfer_id, chain.c.last_created_at)).one()
        books = self.books
        assert report.transfers == len(books.transfers)
        assert report.open_holds == sum(h.status == "open" for h in books.holds.values())
        assert stored == [books.transfers[i].key() for i in sorted(books.transfers)]
        assert counters == {i: a.counters for i, a in books.accounts.items()}
        assert [
            (
                h.id,
                h.debit_account_id,
                h.credit_account_id,
                h.asset,
                h.amount,
                h.type,
                h.status.value,
                h.expires_at,
                h.resolved_by,
                h.resolved_at,
            )
            for h in held
        ] == [books.holds[i].key() for i in sorted(books.holds)]
        assert head.last_transfer_id == books.next_id - 1
        assert head.last_created_at == books.head_time
        # Time never runs backwards along the ids; no user account is below zero.
        times = [row[14] for row in stored]
        assert times == sorted(times)
        for account in books.accounts.values():
            dp, cp, dpe, _ = account.counters
            assert not account.no_overdraft or cp - dp - dpe >= 0


def _fields(op: Operation) -> dict[str, Any]:
    return {name: getattr(op, name) for name in op.__slots__}


def test_ledger_matches_model(db: Database) -> None:
    class Machine(LedgerMachine):
        pass

    Machine.db = db
    run_state_machine_as_test(
        Machine, settings=settings(max_examples=EXAMPLES, stateful_step_count=STEPS)
    )
