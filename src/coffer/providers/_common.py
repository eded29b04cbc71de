"""Helpers the adapters share: header look-up, bounded JSON, strict amounts, id derivation."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from coffer.errors import BadRequest, CofferError, ProviderRejected
from coffer.ledger.types import AMOUNT_MAX

WEBHOOK_BODY_MAX_BYTES = 1_048_576  # the largest real event is a few KiB; 1 MiB is generous
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def header(headers: Mapping[str, str], name: str) -> str | None:
    """`headers[name]`, case-insensitively: a plain dict from a test or Starlette's Headers."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def load_event(body: bytes) -> dict[str, Any]:
    """A webhook body as a JSON object; only called after its signature has been checked."""
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest("the webhook body is not JSON") from exc
    if not isinstance(event, dict):
        raise BadRequest("the webhook body is not a JSON object")
    return event


def check_body_size(body: bytes) -> None:
    if len(body) > WEBHOOK_BODY_MAX_BYTES:
        raise BadRequest(f"the webhook body is larger than {WEBHOOK_BODY_MAX_BYTES} bytes")


def check_amount(amount: int, *, what: str = "amount") -> int:
    """A positive integer of minor units, or ProviderRejected (a bool or float is not one)."""
    if type(amount) is not int or not 0 < amount <= AMOUNT_MAX:
        raise ProviderRejected(f"{what} must be a positive integer of minor units", amount=amount)
    return amount


def check_currency(currency: str) -> str:
    """An ISO 4217 code in upper case, or ProviderRejected."""
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise ProviderRejected("currency must be a three-letter ISO 4217 code in upper case")
    return currency


def optional_int(value: Any) -> int | None:
    """An integer field of a provider's event, or None when absent or not an integer."""
    return value if type(value) is int else None


def optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def upper(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) and value else None


def from_unix(value: Any) -> datetime | None:
    if type(value) is not int or value < 0:
        return None
    return datetime.fromtimestamp(value, UTC)


def derived_key(value: str, *, pattern: str, length_max: int, prefix: str = "") -> str:
    """`prefix + value` when a provider accepts it as an idempotency key, else a stable digest.

    Providers limit their keys (Razorpay payouts: 4-36 of [A-Za-z0-9 _-]); a digest of the
    same input is as idempotent as the input itself.
    """
    candidate = f"{prefix}{value}"
    if len(candidate) <= length_max and re.fullmatch(pattern, candidate):
        return candidate
    digest = hashlib.sha256(candidate.encode("utf-8")).hexdigest()
    return digest[:length_max]


_SAFE_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
E = TypeVar("E", bound=CofferError)


def safe_code(value: Any) -> str | None:
    """A provider's machine-readable code (`card_declined`, `BAD_REQUEST_ERROR`) fit to show a
    client; None for anything else (free text, objects)."""
    return value if isinstance(value, str) and _SAFE_CODE.match(value) else None


def with_provider_text(error: E, text: str) -> E:
    """Keep the provider's own words for logs and `str(error)`, out of the answer.

    An error body shows `error.message` (our sentence) and its details (safe codes only); what
    an SDK exception says is the provider's text, which may quote the request, a key prefix or
    another customer's data, so it goes no further than the log.
    """
    error.args = (f"{error.message} [{text[:500]}]",)
    return error
