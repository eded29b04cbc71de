"""What the API takes and gives for top-ups, orders and refunds. Money is a strict int."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coffer.ledger import AMOUNT_MAX
from coffer.payments.refunds import REASON_LENGTH_MAX, Refund
from coffer.payments.service import PaymentOrder
from coffer.wallets.history_schemas import AccountsOut

Amount = Annotated[int, Field(strict=True, gt=0, le=AMOUNT_MAX)]
ORDER_ID_PATTERN = r"^pay_[0-9a-z]{1,40}$"  # kit.ids' shape: "pay_" and base32
ORDER_ID_LENGTH_MAX = 64
OrderId = Annotated[str, Field(pattern=ORDER_ID_PATTERN, max_length=ORDER_ID_LENGTH_MAX)]
PackageId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", max_length=64)]
# Provider ids and proofs: Razorpay's pay_... and hex HMACs, Stripe's pi_..._secret_..., the
# mock's mock_pay_... and hex.
ProviderToken = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+$", min_length=1)]
ProviderName = Literal["mock", "razorpay", "stripe"]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _exactly_one_of_package_or_diamonds(schema: dict[str, Any]) -> None:
    # What the validators below enforce, in the document: the optional fields take no null, and
    # exactly one of package_id and diamonds is given.
    for prop in schema["properties"].values():
        choices = prop.pop("anyOf", None)
        if choices is not None:
            prop.update(next(c for c in choices if c.get("type") != "null"))
            prop.pop("default", None)
    schema["oneOf"] = [{"required": ["package_id"]}, {"required": ["diamonds"]}]


class TopupIn(_In):
    """Exactly one of `{"package_id"}` or `{"diamonds"}`, with an optional currency and
    provider."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_exactly_one_of_package_or_diamonds)

    package_id: PackageId | None = None
    diamonds: Amount | None = None
    currency: Currency | None = None
    provider: ProviderName | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(value is None for value in data.values()):
            raise ValueError("leave an optional field out rather than sending null")
        return data

    @model_validator(mode="after")
    def _one_of(self) -> TopupIn:
        if (self.package_id is None) == (self.diamonds is None):
            raise ValueError("give exactly one of package_id and diamonds")
        return self


class VerifyIn(_In):
    order_id: OrderId
    payment_id: Annotated[ProviderToken, Field(max_length=128)]
    signature: Annotated[ProviderToken, Field(max_length=512)]


class RefundIn(_In):
    amount: Amount | None = None  # minor units; absent means everything not yet refunded
    reason: Annotated[str, Field(min_length=1, max_length=REASON_LENGTH_MAX)]
    # Take what the wallet still holds and book the rest as the user's debt.
    force: Annotated[bool, Field(strict=True)] = False


class OrderOut(BaseModel):
    id: str
    user_id: str
    purpose: str
    provider: str
    status: str
    amount: int
    currency: str
    diamonds: int
    bonus: int
    package_id: str | None
    provider_order_id: str | None
    provider_payment_id: str | None
    refunded_amount: int
    failure_reason: str | None
    checkout: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    succeeded_at: datetime | None

    @classmethod
    def of(cls, order: PaymentOrder, *, with_checkout: bool = True) -> OrderOut:
        return cls(
            id=order.id,
            user_id=order.user_id,
            purpose=order.purpose,
            provider=order.provider,
            status=order.status,
            amount=order.amount,
            currency=order.currency,
            diamonds=order.diamonds,
            bonus=order.bonus,
            package_id=order.package_id,
            provider_order_id=order.provider_order_id,
            provider_payment_id=order.provider_payment_id,
            refunded_amount=order.refunded_amount,
            failure_reason=order.failure_reason,
            # The checkout is for paying; once settled it is no one's business any more.
            checkout=order.checkout
            if with_checkout and order.status in ("created", "pending")
            else {},
            created_at=order.created_at,
            updated_at=order.updated_at,
            succeeded_at=order.succeeded_at,
        )


class TopupOut(BaseModel):
    order: OrderOut


class RefundOut(BaseModel):
    id: str
    order_id: str
    amount: int
    diamonds: int
    shortfall_diamonds: int
    reason: str
    forced: bool
    status: str
    provider_refund_id: str | None
    failure_reason: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, refund: Refund) -> RefundOut:
        return cls(
            id=refund.id,
            order_id=refund.order_id,
            amount=refund.amount,
            diamonds=refund.diamonds,
            shortfall_diamonds=refund.shortfall_diamonds,
            reason=refund.reason,
            forced=refund.forced,
            status=refund.status,
            provider_refund_id=refund.provider_refund_id,
            failure_reason=refund.failure_reason,
            created_by=refund.created_by,
            created_at=refund.created_at,
            updated_at=refund.updated_at,
        )


class RefundResultOut(BaseModel):
    refund: RefundOut
    order: OrderOut


class VerifyOut(BaseModel):
    order: OrderOut
    credited: bool  # false when the webhook or an earlier verify credited it first
    balance: AccountsOut
