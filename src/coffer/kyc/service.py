"""KYC: `not_submitted -> submitted -> approved | rejected`, and a rejected user may submit again.

Submitting and deciding are units of work for the writer (`db/writer.py`) although no money
moves: each writes a `kyc.updated` event, and the outbox's ids must follow commit order. Their
`before` locks the user's record and refuses a move from the wrong state (409 `invalid_state`),
under the ledger's write lock, so two decisions on one user can never both pass; their `after`
writes the row, the event and, for a decision, the operator's entry in the audit trail.

`kyc_status(session, user_id)` is what other modules gate on (payouts need `approved`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Row, insert, select, update
from sqlalchemy.orm import Session

from coffer import events, oplog
from coffer.db import Database, pages
from coffer.errors import InvalidState, NotFound, ValidationFailed
from coffer.kyc.tables import kyc_records
from coffer.ledger import InvariantViolated, Transfer, Work
from coffer.wallets import service as wallets

STATUSES = ("not_submitted", "submitted", "approved", "rejected")
Status = Literal["not_submitted", "submitted", "approved", "rejected"]
Decision = Literal["approved", "rejected"]
MASK = "****"
VISIBLE_DIGITS = 4
REASON_LENGTH_MAX = 500
LIST_LIMIT_MAX = 500


@dataclass(frozen=True, slots=True)
class Submission:
    """What the user sends (validated by the API's schema)."""

    full_name: str
    document_type: str
    document_number: str
    document_front_url: str
    document_back_url: str | None
    selfie_url: str
    address: str
    city: str
    state: str
    postal_code: str


@dataclass(frozen=True, slots=True)
class Kyc:
    user_id: str
    status: str
    full_name: str
    document_type: str
    document_number: str  # whole: mask it (`masked_number`) for anyone but an admin
    document_front_url: str
    document_back_url: str | None
    selfie_url: str
    address: str
    city: str
    state: str
    postal_code: str
    submissions: int
    submitted_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None
    updated_at: datetime

    @property
    def masked_number(self) -> str:
        return mask_document_number(self.document_number)


def mask_document_number(number: str) -> str:
    """`****` and the last four characters: enough to recognise a document, not to use it."""
    return MASK + number[-VISIBLE_DIGITS:]


def _kyc(row: Row[Any]) -> Kyc:
    m = row._mapping
    return Kyc(**{name: m[name] for name in Kyc.__slots__})


def find_kyc(session: Session, user_id: str, *, for_update: bool = False) -> Kyc | None:
    query = select(kyc_records).where(kyc_records.c.user_id == user_id)
    if for_update:
        query = query.with_for_update()
    row = session.execute(query).first()
    return None if row is None else _kyc(row)


def kyc_status(session: Session, user_id: str) -> str:
    """The user's KYC status: `not_submitted`, `submitted`, `approved` or `rejected`."""
    row = session.execute(
        select(kyc_records.c.status).where(kyc_records.c.user_id == user_id)
    ).first()
    return "not_submitted" if row is None else str(row.status)


def list_kyc(
    session: Session,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
    status: str | None = None,
) -> tuple[list[Kyc], bool]:
    """The operators' queue: newest submission first, keyset-paged on (submitted_at, user_id)."""
    assert 0 < limit <= LIST_LIMIT_MAX
    rows, has_more = pages.newest_first(
        session,
        select(kyc_records),
        at=kyc_records.c.submitted_at,
        id_=kyc_records.c.user_id,
        limit=limit,
        before=before,
        equal=((kyc_records.c.status, status),),
    )
    return [_kyc(r) for r in rows], has_more


def _event(kyc: Kyc) -> events.NewEvent:
    data: dict[str, Any] = {"status": kyc.status}
    if kyc.status == "rejected":
        data["reason"] = kyc.reason
    return events.NewEvent(kyc.user_id, "kyc.updated", data)


def _claims(user_id: str) -> frozenset[str]:
    # Two units on one user never share a batch: the second one's `before` sees the first.
    return frozenset({f"kyc:{user_id}"})


def _rowcount(result: Any) -> int:
    count: int = result.rowcount
    return count


def plan_submit(database: Database, *, user_id: str, submission: Submission, now: datetime) -> Work:
    """The unit that records a submission; 409 while one is `submitted` or `approved`."""
    wallets.check_user_id(user_id, field="user_id")
    with database.read() as session:
        known = wallets.find_user(session, user_id) is not None
        current = find_kyc(session, user_id)
    if current is not None and current.status in ("submitted", "approved"):
        raise InvalidState(f"KYC is {current.status} already", status=current.status)
    if not known:
        with database.unit_of_work() as session:
            wallets.ensure_user(session, user_id, now=now)  # users come into being on first use

    def before(session: Session) -> Kyc | None:
        locked = find_kyc(session, user_id, for_update=True)
        if locked is not None and locked.status != "rejected":
            raise InvalidState(f"KYC is {locked.status} already", status=locked.status)
        return locked

    def after(session: Session, locked: Kyc | None, _: list[Transfer]) -> Kyc:
        values = {
            **asdict(submission),
            "status": "submitted",
            "submitted_at": now,
            "decided_at": None,
            "decided_by": None,
            "reason": None,
            "updated_at": now,
        }
        if locked is None:
            session.execute(insert(kyc_records).values(user_id=user_id, submissions=1, **values))
        else:
            result = session.execute(
                update(kyc_records)
                .where(kyc_records.c.user_id == user_id, kyc_records.c.status == "rejected")
                .values(submissions=locked.submissions + 1, **values)
            )
            if _rowcount(result) != 1:
                raise InvariantViolated(f"the KYC of {user_id} changed under its lock")
        made = find_kyc(session, user_id)
        assert made is not None
        events.emit(session, [_event(made)], now=now)
        return made

    return Work(None, before=before, after=after, claims=_claims(user_id))


def _check_reason(reason: str | None, *, required: bool) -> str | None:
    text = (reason or "").strip()
    if required and not text:
        raise ValidationFailed(
            "a rejection needs a reason",
            fields=[{"field": "body.reason", "message": "required", "type": "reason"}],
        )
    if len(text) > REASON_LENGTH_MAX:
        raise ValidationFailed(
            f"reason must be at most {REASON_LENGTH_MAX} characters",
            fields=[{"field": "body.reason", "message": "too long", "type": "reason"}],
        )
    return text or None


def plan_decide(
    *, user_id: str, decision: Decision, reason: str | None, actor: str, now: datetime
) -> Work:
    """The unit that approves or rejects a `submitted` KYC, audited with the operator's reason.

    404 for an unknown user; 409 `invalid_state` for anything but `submitted`; a rejection
    without a reason is a 422."""
    wallets.check_user_id(user_id)
    assert decision in ("approved", "rejected")
    reason = _check_reason(reason, required=decision == "rejected")

    def before(session: Session) -> Kyc:
        if wallets.find_user(session, user_id) is None:
            raise NotFound(f"no user {user_id}", user_id=user_id)
        locked = find_kyc(session, user_id, for_update=True)
        status = "not_submitted" if locked is None else locked.status
        if locked is None or locked.status != "submitted":
            raise InvalidState(f"KYC is {status}: only a submitted one is decided", status=status)
        return locked

    def after(session: Session, locked: Kyc, _: list[Transfer]) -> Kyc:
        result = session.execute(
            update(kyc_records)
            .where(kyc_records.c.user_id == user_id, kyc_records.c.status == "submitted")
            .values(
                status=decision, decided_at=now, decided_by=actor, reason=reason, updated_at=now
            )
        )
        if _rowcount(result) != 1:
            raise InvariantViolated(f"the KYC of {user_id} changed under its lock")
        oplog.record(
            session,
            actor=actor,
            action="kyc.approve" if decision == "approved" else "kyc.reject",
            subject_type="user",
            subject_id=user_id,
            reason=reason,
            details={
                "document_type": locked.document_type,
                "document_number": locked.masked_number,
                "submission": locked.submissions,
            },
            now=now,
        )
        decided = find_kyc(session, user_id)
        assert decided is not None
        events.emit(session, [_event(decided)], now=now)
        return decided

    return Work(None, before=before, after=after, claims=_claims(user_id))
