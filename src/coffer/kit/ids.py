"""Public ids: a short prefix naming the kind, then 20 characters of time-ordered randomness."""

from __future__ import annotations

import hashlib
import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case


def new_id(prefix: str) -> str:
    """`pay_01hx...`: sortable by creation time (48-bit ms), 52 random bits against collisions."""
    assert prefix.isidentifier() and len(prefix) <= 8
    value = (int(time.time() * 1000) << 52) | int.from_bytes(os.urandom(7), "big") >> 4
    chars = []
    for _ in range(20):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def derived_id(prefix: str, *parts: str) -> str:
    """An id that is a function of `parts` (e.g. a caller and its Idempotency-Key): a copy or a
    retry of a request names the same thing, so every key derived from it replays too."""
    assert prefix.isidentifier() and len(prefix) <= 8 and parts
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    value = int.from_bytes(digest[:13], "big") >> 4  # 100 bits: 20 base32 characters
    chars = []
    for _ in range(20):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
