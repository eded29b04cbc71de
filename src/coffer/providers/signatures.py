"""HMAC signatures of the providers, checked on raw bytes in constant time.

Three schemes, one set of rules:

- Razorpay checkout: hex HMAC-SHA256 of `"{order_id}|{payment_id}"` with the API key secret.
- Razorpay webhooks: hex HMAC-SHA256 of the raw body with the webhook secret, in
  `X-Razorpay-Signature`.
- Timestamped (Stripe's `Stripe-Signature`, and the mock provider's `X-Mock-Signature`):
  `t=<unix seconds>,v1=<hex>[,v1=<hex>...]`, the hex being HMAC-SHA256 of `b"<t>." + raw_body`.
  Several `v1` entries are accepted so a secret can be rotated; unknown schemes (`v0`) are
  ignored. Unlike the Stripe SDK, which only refuses stale timestamps and turns the check off
  with a zero tolerance, a timestamp more than `tolerance_s` in the future is refused too and
  the tolerance cannot be turned off: an event signed "tomorrow" would otherwise be replayable
  until tomorrow plus five minutes.

Every verifier raises `InvalidSignature` when the signature does not hold and
`ProviderDisabled` when it has no secret: an empty secret turns verification off by refusing,
never by accepting (STYLE habit 9). Signatures are compared with `hmac.compare_digest` on
bytes, so neither their length nor their content leaks through timing beyond what HMAC allows.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from coffer.errors import InvalidSignature, ProviderDisabled

STRIPE_TOLERANCE_S = 300  # Stripe's own default: a delivery older than five minutes is stale
TIMESTAMPED_TOLERANCE_S = STRIPE_TOLERANCE_S
HEADER_LENGTH_MAX = 4_096  # a signature header longer than this is not one
SIGNATURES_MAX = 8  # v1 entries per header: a rotation needs two, an attacker wants many
SCHEME = "v1"


def hmac_sha256_hex(secret: str | bytes, message: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of `message` under `secret` (a str is UTF-8 encoded)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def constant_time_equal(expected: str, given: str) -> bool:
    """`expected == given`, in time that depends only on their lengths.

    Compares UTF-8 bytes: `hmac.compare_digest` raises on non-ASCII `str`, and an attacker
    chooses what `given` holds.
    """
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def _require_secret(secret: str | None, *, what: str) -> str:
    if not secret or not secret.strip():
        raise ProviderDisabled(f"{what}: no secret is configured, so nothing can be verified")
    return secret


# -- Razorpay -------------------------------------------------------------------------------------


def sign_razorpay_payment(*, order_id: str, payment_id: str, key_secret: str) -> str:
    """The `razorpay_signature` Razorpay Checkout hands the client for a paid order."""
    secret = _require_secret(key_secret, what="Razorpay payment signature")
    return hmac_sha256_hex(secret, f"{order_id}|{payment_id}".encode())


def verify_razorpay_payment(
    *, order_id: str, payment_id: str, signature: str, key_secret: str | None
) -> None:
    """Raise `InvalidSignature` unless `signature` is Razorpay's for this order and payment."""
    secret = _require_secret(key_secret, what="Razorpay payment signature")
    expected = hmac_sha256_hex(secret, f"{order_id}|{payment_id}".encode())
    if not constant_time_equal(expected, signature):
        raise InvalidSignature("the payment signature does not match this order and payment")


def sign_razorpay_webhook(body: bytes, *, secret: str) -> str:
    """The `X-Razorpay-Signature` value Razorpay sends with `body`."""
    return hmac_sha256_hex(_require_secret(secret, what="Razorpay webhook"), body)


def verify_razorpay_webhook(body: bytes, *, signature: str | None, secret: str | None) -> None:
    """Raise `InvalidSignature` unless `signature` is the webhook secret's HMAC of `body`."""
    key = _require_secret(secret, what="Razorpay webhook")
    if not signature:
        raise InvalidSignature("the X-Razorpay-Signature header is missing")
    if len(signature) > HEADER_LENGTH_MAX:
        raise InvalidSignature("the X-Razorpay-Signature header is too long")
    if not constant_time_equal(hmac_sha256_hex(key, body), signature):
        raise InvalidSignature("the webhook signature does not match the body")


# -- Timestamped: Stripe-Signature and X-Mock-Signature -------------------------------------------


def sign_timestamped(body: bytes, *, secrets: str | list[str], timestamp: int) -> str:
    """A `t=...,v1=...` header for `body` at `timestamp`, one `v1` per secret (rotation)."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    assert keys, "at least one secret signs"
    signed = str(int(timestamp)).encode("ascii") + b"." + body
    parts = [f"t={int(timestamp)}"]
    parts += [
        f"{SCHEME}={hmac_sha256_hex(_require_secret(k, what='signing'), signed)}" for k in keys
    ]
    return ",".join(parts)


def parse_timestamped(header: str) -> tuple[int, list[str]]:
    """The timestamp and the `v1` signatures of a `t=...,v1=...` header; strict about its shape."""
    if len(header) > HEADER_LENGTH_MAX:
        raise InvalidSignature("the signature header is too long")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidSignature("the signature header is malformed")
        # Keys are matched exactly, as the Stripe SDK does: " v1" (after a space) is not "v1".
        if key == "t":
            timestamps.append(value)
        elif key == SCHEME:
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise InvalidSignature("the signature header has no single valid timestamp")
    if not signatures:
        raise InvalidSignature(f"the signature header has no {SCHEME} signature")
    if len(signatures) > SIGNATURES_MAX:
        raise InvalidSignature("the signature header has too many signatures")
    return int(timestamps[0]), signatures


def verify_timestamped(
    body: bytes,
    *,
    header: str | None,
    secret: str | None,
    tolerance_s: int = TIMESTAMPED_TOLERANCE_S,
    now_s: float | None = None,
    what: str = "webhook",
) -> int:
    """Check a `t=...,v1=...` header against the raw `body`; return its timestamp.

    Accepted when one `v1` matches and the timestamp is within `tolerance_s` of `now_s`
    (default: the system clock) either way. Raises `InvalidSignature` otherwise.
    """
    assert tolerance_s > 0, "a webhook tolerance of zero would accept any replay"
    key = _require_secret(secret, what=what)
    if not header:
        raise InvalidSignature(f"the {what} signature header is missing")
    timestamp, signatures = parse_timestamped(header)
    expected = hmac_sha256_hex(key, str(timestamp).encode("ascii") + b"." + body)
    # Every candidate is compared (no early exit), so timing does not say which one matched.
    matched = [constant_time_equal(expected, candidate) for candidate in signatures]
    if not any(matched):
        raise InvalidSignature(f"no {what} signature matches the body")
    now = time.time() if now_s is None else now_s
    if now - timestamp > tolerance_s:
        raise InvalidSignature(f"the {what} signature is older than {tolerance_s} s")
    if timestamp - now > tolerance_s:
        raise InvalidSignature(f"the {what} signature is dated more than {tolerance_s} s ahead")
    return timestamp


def sign_stripe(body: bytes, *, secrets: str | list[str], timestamp: int) -> str:
    """The `Stripe-Signature` header Stripe sends with `body` at `timestamp`."""
    return sign_timestamped(body, secrets=secrets, timestamp=timestamp)


def verify_stripe(
    body: bytes,
    *,
    header: str | None,
    secret: str | None,
    tolerance_s: int = STRIPE_TOLERANCE_S,
    now_s: float | None = None,
) -> int:
    """Check a `Stripe-Signature` header on the raw body; return its timestamp."""
    return verify_timestamped(
        body, header=header, secret=secret, tolerance_s=tolerance_s, now_s=now_s, what="Stripe"
    )


__all__ = [
    "HEADER_LENGTH_MAX",
    "SIGNATURES_MAX",
    "STRIPE_TOLERANCE_S",
    "TIMESTAMPED_TOLERANCE_S",
    "constant_time_equal",
    "hmac_sha256_hex",
    "parse_timestamped",
    "sign_razorpay_payment",
    "sign_razorpay_webhook",
    "sign_stripe",
    "sign_timestamped",
    "verify_razorpay_payment",
    "verify_razorpay_webhook",
    "verify_stripe",
    "verify_timestamped",
]
