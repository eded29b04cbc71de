"""What the API takes and gives for escrows. Amounts are strict ints of minor units."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from coffer.auth.principal import USER_ID_PATTERN
from coffer.escrow.records import Escrow
from coffer.ledger import AMOUNT_MAX
from coffer.payments.refunds import REASON_LENGTH_MAX
from coffer.payments.schemas import Currency, OrderOut, ProviderName
from coffer.payments.service import PaymentOrder

Amount = Annotated[int, Field(strict=True, gt=0, le=AMOUNT_MAX)]
UserId = Annotated[str, Field(pattern=USER_ID_PATTERN, min_length=1, max_length=64)]
Reason = Annotated[str, Field(min_length=1, max_length=REASON_LENGTH_MAX)]
REFERENCE_LENGTH_MAX = 128
ESCROW_ID_PATTERN = r"^esc_[0-9a-z]{20}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EscrowIn(_In):
    payee_id: UserId
    amount: Amount
    currency: Currency
    reference: Annotated[str, Field(min_length=1, max_length=REFERENCE_LENGTH_MAX)] | None = None
    provider: ProviderName | None = None
    # If nobody disputes it by then, it is released by itself.
    auto_release_at: AwareDatetime | None = None


class ReleaseIn(_In):
    amount: Amount | None = None  # absent: all that is left
    reason: Reason | None = None  # required of an admin (it goes into the audit trail)


class RefundEscrowIn(_In):
    reason: Reason | None = None  # required of an admin


class DisputeIn(_In):
    reason: Reason


class EscrowOut(BaseModel):
    id: str
    status: str
    payer_id: str
    payee_id: str
    amount: int
    currency: str
    fee_bps: int
    reference: str | None
    released_amount: int  # gross: the payee's share and the fees
    fee_amount: int
    refunded_amount: int
    left: int  # what the escrow still holds
    auto_release_at: datetime | None
    dispute_reason: str | None
    order_id: str
    created_at: datetime
    updated_at: datetime
    held_at: datetime | None
    order: OrderOut | None = None  # on opening: what the client needs to pay

    @classmethod
    def of(cls, escrow: Escrow, order: PaymentOrder | None = None) -> EscrowOut:
        values = {name: getattr(escrow, name) for name in cls.model_fields if name != "order"}
        return cls(**values, order=None if order is None else OrderOut.of(order))


class EscrowEnvelope(BaseModel):
    escrow: EscrowOut

    @classmethod
    def of(cls, escrow: Escrow, order: PaymentOrder | None = None) -> EscrowEnvelope:
        return cls(escrow=EscrowOut.of(escrow, order))


class EscrowPageOut(BaseModel):
    data: list[EscrowOut]
    has_more: bool
    next_cursor: str | None
