"""What processing an inbox entry can fail with, besides the database's own errors."""

from __future__ import annotations

from coffer.errors import CofferError


class PermanentWebhookError(CofferError):
    """An event that can never be applied (e.g. its amount differs from the order's): it is
    parked as failed at once, for an operator to look at, instead of being retried."""

    code = "invalid_state"


class RetryableWebhookError(CofferError):
    """Not yet applicable (e.g. the order it names is not committed yet): retry later."""

    code = "invalid_state"


__all__ = ["PermanentWebhookError", "RetryableWebhookError"]
