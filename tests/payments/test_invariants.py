"""Checks that guard money and bad input survive `python -O` (STYLE.md habit 8).

Each scenario runs in a `python -O` subprocess (every `assert` stripped) against the test
database: a payment order's guarded status update that matches no row (a trigger makes the
database skip it, as if the row had moved under its lock) raises `InvariantViolated` and
commits nothing; a client's malformed cursor is still a 422, never a crash.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from coffer import ledger
from coffer.db import Database
from coffer.errors import ValidationFailed
from coffer.payments import service as payments
from tests.api.harness import Api
from tests.ledger.triggers import updates_skipped
from tests.payments.helpers import topup
from tests.support.optimised import run_optimised

MARK = "invariant violated:"
BAD_CURSORS: list[Any] = [
    "x",
    [],
    [1, 2],
    ["2031-01-01T00:00:00", "ord_1"],  # no zone
    ["not a time", "ord_1"],
    ["2031-01-01T00:00:00+00:00", 7],
]


def cancel_order(url: str, order_id: str) -> None:
    """A scenario: cancel an order; print what refused it."""
    database = Database.connect(url)
    try:
        with database.unit_of_work() as s:
            payments.mark_cancelled(s, order_id=order_id, now=datetime.now(UTC))
    except ledger.InvariantViolated as exc:
        print(MARK, exc)
    else:
        print("committed")
    finally:
        database.dispose()


def decode_bad_cursors() -> None:
    """A scenario: decode each malformed cursor; print what each raised."""
    for value in BAD_CURSORS:
        try:
            payments.decode_order_cursor(value)
        except ValidationFailed:
            print("ValidationFailed")
        except Exception as exc:  # what escapes is the finding
            print(type(exc).__name__)
        else:
            print("accepted")


def cancel_order_then_decode_bad_cursors(url: str, order_id: str) -> None:
    """Both scenarios in one subprocess (each start of `python -O` costs seconds)."""
    cancel_order(url, order_id)
    decode_bad_cursors()


def test_guarded_order_update_and_bad_cursors_under_python_O(api: Api, db: Database) -> None:
    order = topup(api, "alice")
    with updates_skipped(db, "payment_orders"):
        printed = run_optimised(
            db, __name__, "cancel_order_then_decode_bad_cursors", order["id"]
        ).splitlines()
    assert printed[0] == f"{MARK} order {order['id']} changed under its lock", printed
    assert printed[1:] == ["ValidationFailed"] * len(BAD_CURSORS)
    with db.read() as s:
        assert payments.get_order(s, order["id"]).status == "created"
