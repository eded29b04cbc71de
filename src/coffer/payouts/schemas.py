"""What the API takes and gives for payees and payouts. Amounts are strict ints of minor units."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coffer.ledger import AMOUNT_MAX
from coffer.payouts.payees import Payee
from coffer.payouts.records import Payout

AssetCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,15}$")]
Amount = Annotated[int, Field(strict=True, gt=0, le=AMOUNT_MAX)]
# As RazorpayX validates them: an IFSC is 4 letters, a 0, then 6 letters or digits; an account
# number 5 to 35 letters or digits; a VPA `name@bank`.
IFSC_PATTERN = r"^[A-Z]{4}0[A-Z0-9]{6}$"
ACCOUNT_NUMBER_PATTERN = r"^[A-Za-z0-9]{5,35}$"
VPA_PATTERN = r"^[A-Za-z0-9.\-_]{2,256}@[A-Za-z]{2,64}$"
HOLDER_NAME_PATTERN = r"^[A-Za-z0-9 .,'&\-]{3,120}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BankAccountIn(_In):
    type: Literal["bank_account"]
    name: Annotated[str, Field(pattern=HOLDER_NAME_PATTERN, max_length=120)]
    ifsc: Annotated[str, Field(pattern=IFSC_PATTERN, max_length=11)]
    account_number: Annotated[str, Field(pattern=ACCOUNT_NUMBER_PATTERN, max_length=35)]


class VpaIn(_In):
    type: Literal["vpa"]
    address: Annotated[str, Field(pattern=VPA_PATTERN, max_length=321)]


class StripeAccountIn(_In):
    type: Literal["stripe_account"]
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "US"
    email: Annotated[str | None, Field(pattern=r"^[^@\s]{1,64}@[^@\s]{1,255}$", max_length=320)] = (
        None
    )


class PutPayeeIn(_In):
    provider: Literal["mock", "razorpay", "stripe"]
    destination: Annotated[BankAccountIn | VpaIn | StripeAccountIn, Field(discriminator="type")]


class PayeeOut(BaseModel):
    provider: str
    status: str
    requirements: list[str]
    destination: dict[str, Any]
    # Stripe: where the user finishes onboarding, in the answer to the PUT that made it only.
    onboarding_url: str | None
    updated_at: datetime

    @classmethod
    def of(cls, payee: Payee) -> PayeeOut:
        return cls(
            provider=payee.provider,
            status=payee.status,
            requirements=list(payee.requirements),
            destination=payee.destination,
            onboarding_url=payee.onboarding_url,
            updated_at=payee.updated_at,
        )


class RequestPayoutIn(_In):
    amount: Amount
    asset: AssetCode | None = None  # DIAMOND when unset


class RetryPayoutIn(_In):
    reason: Annotated[str | None, Field(max_length=255)] = None


class PayoutOut(BaseModel):
    id: str
    user_id: str
    status: str
    provider: str
    amount: int
    asset: str
    payout_amount: int
    payout_currency: str
    rate: int  # `asset` minor units per major unit of `payout_currency`
    attempt: int
    provider_payout_id: str | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    settled_at: datetime | None

    @classmethod
    def of(cls, payout: Payout) -> PayoutOut:
        return cls(**{name: getattr(payout, name) for name in cls.model_fields})


class PayoutEnvelope(BaseModel):
    payout: PayoutOut

    @classmethod
    def of(cls, payout: Payout) -> PayoutEnvelope:
        return cls(payout=PayoutOut.of(payout))


class PayoutPageOut(BaseModel):
    data: list[PayoutOut]
    has_more: bool
    next_cursor: str | None
