"""Standard Webhooks signatures (https://www.standardwebhooks.com): what the receiver verifies.

A secret is `whsec_` + base64 of random bytes; the HMAC key is those bytes (the base64 decoded),
not the text. Each request carries `webhook-id` (the message, the same on every retry),
`webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`: space-separated
`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per secret that currently signs
(two during a rotation's overlap, so a receiver holding either secret accepts).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret
SECRET_BYTES = 32  # the spec asks for 24 to 64
SIGNATURE_VERSION = "v1"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    assert secret.startswith(SECRET_PREFIX), "a signing secret starts with whsec_"
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError("a signing secret is whsec_ and base64") from exc
    assert len(key) >= 24, "a signing secret has at least 24 bytes"
    return key


def signature(secret: str, *, message_id: str, timestamp_s: int, body: bytes) -> str:
    """`v1,<base64>` for one secret."""
    signed = f"{message_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def headers(
    secrets: Sequence[str], *, message_id: str, timestamp_s: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed by every secret in `secrets` (newest first)."""
    assert 1 <= len(secrets) <= 2, "one secret, or two while a rotation overlaps"
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": " ".join(
            signature(s, message_id=message_id, timestamp_s=timestamp_s, body=body) for s in secrets
        ),
    }


__all__ = ["SECRET_PREFIX", "headers", "new_secret", "signature"]
