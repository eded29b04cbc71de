"""What the API takes and gives for gifts. Diamonds are a strict int."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coffer.auth.principal import USER_ID_PATTERN
from coffer.gifts.service import MESSAGE_LENGTH_MAX, Gift, GiftStats, SentGift
from coffer.ledger import AMOUNT_MAX

Diamonds = Annotated[int, Field(strict=True, gt=0, le=AMOUNT_MAX)]
UserId = Annotated[str, Field(pattern=USER_ID_PATTERN, min_length=1, max_length=64)]


class SendGiftIn(BaseModel):
    """`{"receiver_id", "diamonds"}` or `{"receiver_id", "gift_type"}`."""

    model_config = ConfigDict(extra="forbid")

    receiver_id: UserId
    diamonds: Diamonds | None = None
    gift_type: Annotated[str | None, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] = None
    message: Annotated[str | None, Field(max_length=MESSAGE_LENGTH_MAX)] = None
    call_id: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = None

    @model_validator(mode="after")
    def _one_of(self) -> SendGiftIn:
        if (self.diamonds is None) == (self.gift_type is None):
            raise ValueError("give exactly one of diamonds and gift_type")
        return self


class GiftOut(BaseModel):
    id: str
    sender_id: str
    receiver_id: str
    gift_type: str | None
    diamonds: int
    host_amount: int
    agency_amount: int
    platform_amount: int
    agency_id: str | None
    message: str | None
    call_id: str | None
    transfer_id: int
    created_at: datetime

    @classmethod
    def of(cls, gift: Gift) -> GiftOut:
        return cls(**{name: getattr(gift, name) for name in Gift.__slots__})


class SendGiftOut(BaseModel):
    gift: GiftOut
    sender_balance: int

    @classmethod
    def of(cls, sent: SentGift) -> SendGiftOut:
        return cls(gift=GiftOut.of(sent.gift), sender_balance=sent.sender_balance)


class GiftPageOut(BaseModel):
    data: list[GiftOut]
    has_more: bool
    next_cursor: str | None


class TopReceiverOut(BaseModel):
    receiver_id: str
    count: int
    diamonds: int


class GiftStatsOut(BaseModel):
    from_: datetime | None = Field(default=None, serialization_alias="from")
    to: datetime | None = None
    count: int
    diamonds: int
    top_receivers: list[TopReceiverOut]

    @classmethod
    def of(
        cls,
        stats: GiftStats,
        *,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
    ) -> GiftStatsOut:
        return cls(
            from_=created_from,
            to=created_to,
            count=stats.count,
            diamonds=stats.diamonds,
            top_receivers=[
                TopReceiverOut(receiver_id=r, count=c, diamonds=d)
                for r, c, d in stats.top_receivers
            ],
        )


class AdminGiftPageOut(GiftPageOut):
    stats: GiftStatsOut
