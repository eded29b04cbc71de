"""The idempotency record's paired check survives `python -O` (STYLE.md habit 8).

Storing the answer to a claimed key is a guarded UPDATE (`status_code IS NULL`): it must touch
exactly the one row the claim made. In a `python -O` subprocess (asserts stripped), with a
trigger that makes the database skip the UPDATE, it raises `InvariantViolated` and the claim is
rolled back with it, so a retry runs the request again instead of replaying nothing.
"""

from __future__ import annotations

from coffer import idempotency, ledger
from coffer.db import Database
from tests.ledger.triggers import updates_skipped
from tests.support.optimised import run_optimised

MARK = "invariant violated:"
SCOPE, KEY = "user:alice", "retry-1"


def claim_and_answer(url: str) -> None:
    """A scenario: claim a key and store its answer in one unit of work; print the outcome."""
    database = Database.connect(url)
    try:
        with database.unit_of_work() as s:
            fingerprint = idempotency.fingerprint(method="POST", path="/x", query="", body=b"{}")
            claimed = idempotency.claim(
                s, scope=SCOPE, key=KEY, fingerprint=fingerprint, method="POST", path="/x"
            )
            print("claimed" if claimed is None else "replayed")
            idempotency.record_response(
                s,
                scope=SCOPE,
                key=KEY,
                status_code=201,
                content_type="application/json",
                body=b"{}",
            )
    except ledger.InvariantViolated as exc:
        print(MARK, exc)
    else:
        print("committed")
    finally:
        database.dispose()


def test_answer_stored_once_raises_under_python_O(db: Database) -> None:
    with updates_skipped(db, "idempotency_keys"):
        printed = run_optimised(db, __name__, "claim_and_answer").splitlines()
    assert printed[0] == "claimed"
    assert printed[1].startswith(f"{MARK} the answer to {SCOPE} {KEY!r} was stored 0 times")
    with db.read() as s:
        assert idempotency.find(s, scope=SCOPE, key=KEY) is None  # the claim rolled back too
