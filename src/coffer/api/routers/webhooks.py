"""Webhooks in: `POST /webhooks/{razorpay,stripe,mock}`.

The signature is checked on the raw bytes before anything else; a bad or stale signature is 400
and changes nothing; an event seen before is answered 200 and changes nothing. A verified event
is stored first and answered 200 even if applying it fails (it is retried from the inbox).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from coffer.api import errors
from coffer.api.deps import DatabaseDep, clock_of, get_providers, get_writer
from coffer.errors import CofferError
from coffer.webhooks import flows

router = APIRouter(
    prefix="/webhooks",
    tags=["webhooks"],
    responses=errors.responses(*errors.ANY, *errors.WITH_BODY, 503),
)

BODY_BYTES_MAX = 1024 * 1024


class PayloadTooLarge(CofferError):
    code = "payload_too_large"


class WebhookOut(BaseModel):
    received: bool
    duplicate: bool
    event_id: str


@router.post(
    "/{provider}",
    summary="Receive a provider's signed event",
)
async def receive(
    provider: Literal["razorpay", "stripe", "mock"], request: Request, database: DatabaseDep
) -> WebhookOut:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > BODY_BYTES_MAX:
        raise PayloadTooLarge(f"a webhook body is at most {BODY_BYTES_MAX} bytes")
    body = await request.body()
    if len(body) > BODY_BYTES_MAX:
        raise PayloadTooLarge(f"a webhook body is at most {BODY_BYTES_MAX} bytes")
    headers = {name.lower(): value for name, value in request.headers.items()}
    # The database work is synchronous: run it off the event loop.
    from starlette.concurrency import run_in_threadpool

    receipt = await run_in_threadpool(
        flows.receive_webhook,
        database,
        get_providers(request),
        provider_name=provider,
        body=body,
        headers=headers,
        clock=clock_of(request),
        writer=get_writer(request),
    )
    return WebhookOut(received=True, duplicate=receipt.duplicate, event_id=receipt.event_id)
