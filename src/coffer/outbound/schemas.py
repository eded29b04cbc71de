"""What the admin webhook routes take and answer (API.md, "Admin": webhook endpoints)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from coffer import oplog
from coffer.outbound.service import (
    EVENT_TYPES_MAX,
    Attempt,
    Delivery,
    Endpoint,
)
from coffer.outbound.urls import URL_LENGTH_MAX

EventType = Annotated[str, Field(pattern=r"^(\*|[a-z][a-z_]*\.[a-z][a-z_]*)$", max_length=64)]
Reason = Annotated[str, Field(min_length=1, max_length=oplog.REASON_LENGTH_MAX)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class EndpointIn(_In):
    url: Annotated[str, Field(min_length=1, max_length=URL_LENGTH_MAX)]
    events: Annotated[list[EventType], Field(min_length=1, max_length=EVENT_TYPES_MAX)]
    reason: Reason | None = None


class RotateIn(_In):
    reason: Reason | None = None


class ResendIn(_In):
    reason: Reason


class RecoverIn(_In):
    since: AwareDatetime
    reason: Reason


class EndpointOut(BaseModel):
    id: str
    url: str
    events: list[str]
    status: str  # enabled | disabled
    disabled_reason: str | None
    # Until then the secret a rotation replaced signs too (a second `v1,` signature).
    previous_secret_expires_at: datetime | None
    throttled_until: datetime | None  # a 429 or 5xx asked us to wait
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, endpoint: Endpoint) -> EndpointOut:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            events=list(endpoint.events),
            status=endpoint.status,
            disabled_reason=endpoint.disabled_reason,
            previous_secret_expires_at=endpoint.previous_secret_expires_at,
            throttled_until=endpoint.throttled_until,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


class EndpointWithSecretOut(EndpointOut):
    """Shown on registration and rotation only: `whsec_` + base64; the key is the decoded bytes."""

    secret: str


class EndpointPageOut(BaseModel):
    data: list[EndpointOut]
    has_more: bool
    next_cursor: str | None


class RecoveredOut(BaseModel):
    endpoint: EndpointOut
    requeued: int  # failed deliveries since `since`, sent again from now


class AttemptOut(BaseModel):
    attempted_at: datetime
    status_code: int | None  # None: no answer (refused, unreachable, timed out)
    latency_ms: int
    error: str | None

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptOut:
        return cls(
            attempted_at=attempt.attempted_at,
            status_code=attempt.status_code,
            latency_ms=attempt.latency_ms,
            error=attempt.error,
        )


class DeliveryOut(BaseModel):
    id: str
    endpoint_id: str
    event_id: int
    event_type: str
    message_id: str  # the `webhook-id` header: the same on every attempt and resend
    status: str  # pending | succeeded | failed
    attempts: int  # in the current round (a resend or recovery starts a new one)
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    succeeded_at: datetime | None
    attempt_log: list[AttemptOut]  # oldest first, the latest 20

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryOut:
        return cls(
            id=delivery.id,
            endpoint_id=delivery.endpoint_id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            message_id=delivery.message_id,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            created_at=delivery.created_at,
            updated_at=delivery.updated_at,
            succeeded_at=delivery.succeeded_at,
            attempt_log=[AttemptOut.of(a) for a in delivery.attempt_log],
        )


class DeliveryPageOut(BaseModel):
    data: list[DeliveryOut]
    has_more: bool
    next_cursor: str | None
