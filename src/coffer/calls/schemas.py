"""What the API takes and gives for calls. Amounts and durations are strict ints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from coffer.auth.principal import USER_ID_PATTERN
from coffer.calls.rates import Rate
from coffer.calls.service import Call
from coffer.ledger import AMOUNT_MAX

UserId = Annotated[str, Field(pattern=USER_ID_PATTERN, min_length=1, max_length=64)]
AssetCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,15}$")]
RatePerMinute = Annotated[int, Field(strict=True, gt=0, le=AMOUNT_MAX)]
# A day at most: a call reported longer than that is a client bug, not a call.
DURATION_S_MAX = 24 * 3_600


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartCallIn(_In):
    caller_id: UserId
    host_id: UserId
    asset: AssetCode | None = None
    rate_per_minute: RatePerMinute | None = None


class EndCallIn(_In):
    duration_s: Annotated[int, Field(strict=True, ge=0, le=DURATION_S_MAX)]


class CallRateIn(_In):
    rate_per_minute: RatePerMinute
    asset: AssetCode
    host_id: UserId | None = None
    reason: Annotated[str | None, Field(max_length=255)] = None


class CallRateOut(BaseModel):
    asset: str
    rate_per_minute: int
    host_id: str | None

    @classmethod
    def of(cls, rate: Rate) -> CallRateOut:
        return cls(asset=rate.asset, rate_per_minute=rate.rate_per_minute, host_id=rate.host_id)


class CallOut(BaseModel):
    id: str
    caller_id: str
    host_id: str
    status: str
    asset: str
    rate_per_minute: int
    hold_amount: int
    authorized_seconds: int
    duration_s: int | None
    cost: int | None
    host_amount: int | None
    agency_amount: int | None
    platform_amount: int | None
    started_at: datetime
    ended_at: datetime | None

    @classmethod
    def of(cls, call: Call) -> CallOut:
        return cls(**{name: getattr(call, name) for name in cls.model_fields})


class CallEnvelope(BaseModel):
    call: CallOut

    @classmethod
    def of(cls, call: Call) -> CallEnvelope:
        return cls(call=CallOut.of(call))


class CallPageOut(BaseModel):
    data: list[CallOut]
    has_more: bool
    next_cursor: str | None
