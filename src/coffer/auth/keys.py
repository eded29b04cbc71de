"""API keys: `ck_` and 43 base-62 characters (256 bits), stored only as their SHA-256.

Why a fast hash and not bcrypt/scrypt/argon2: a slow hash protects secrets people choose, whose
entropy is low enough to guess. An API key is 256 random bits; nobody can enumerate that space
however fast the hash is, so a stolen table of SHA-256 digests yields no keys. A fast hash also
lets the hash itself be the lookup key (a unique index), so checking a key costs one indexed read
and microseconds of CPU on every request, where a slow hash would cost tens of milliseconds and
need a separate key id in the token to find the row first.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string

KEY_PREFIX = "ck_"
KEY_SECRET_LENGTH = 43  # 43 base-62 characters hold 256 bits (62**43 > 2**256)
KEY_DISPLAY_LENGTH = 6  # characters of the secret shown in listings (36 bits: not a risk)
_ALPHABET = string.ascii_letters + string.digits
_KEY_FORMAT = re.compile(rf"^{KEY_PREFIX}[A-Za-z0-9]{{{KEY_SECRET_LENGTH}}}$")


def new_key() -> str:
    """A fresh API key from the OS's CSPRNG."""
    key = KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(KEY_SECRET_LENGTH))
    assert looks_like_key(key)
    return key


def looks_like_key(value: str) -> bool:
    """True if `value` has the shape of an API key (checked before any database read)."""
    return _KEY_FORMAT.fullmatch(value) is not None


def is_key_shaped(value: str) -> bool:
    """True if `value` claims to be an API key (its prefix), whether or not it is well formed."""
    return value.startswith(KEY_PREFIX)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("ascii")).digest()


def display_prefix(key: str) -> str:
    """`ck_AbC123`: enough to tell keys apart in a listing, useless to an attacker."""
    return key[: len(KEY_PREFIX) + KEY_DISPLAY_LENGTH]
