"""User tokens (no database): minting, checking, and every way a token is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from coffer.auth import tokens
from coffer.errors import Unauthenticated, ValidationFailed

SECRET = "s" * 64  # long enough for HS512 too (the refused-algorithm test)
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_round_trip() -> None:
    issued = tokens.mint_user_token(SECRET, user_id="u1", ttl_s=600, now=datetime.now(UTC))
    assert tokens.user_of_token(SECRET, issued.token) == "u1"
    claims = jwt.decode(issued.token, SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 600
    assert issued.expires_at == datetime.fromtimestamp(claims["exp"], UTC)


def test_expiry_is_checked_with_a_little_leeway() -> None:
    now = datetime.now(UTC)
    just_expired = tokens.mint_user_token(
        SECRET, user_id="u1", ttl_s=60, now=now - timedelta(seconds=70)
    )
    assert tokens.user_of_token(SECRET, just_expired.token) == "u1"  # within 30 s of leeway
    long_expired = tokens.mint_user_token(
        SECRET, user_id="u1", ttl_s=60, now=now - timedelta(seconds=120)
    )
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.user_of_token(SECRET, long_expired.token)


@pytest.mark.parametrize("ttl_s", [0, 59, 30 * 24 * 3_600 + 1, -5])
def test_ttl_bounds(ttl_s: int) -> None:
    with pytest.raises(ValidationFailed):
        tokens.mint_user_token(SECRET, user_id="u1", ttl_s=ttl_s, now=NOW)


def test_ttl_must_be_an_int() -> None:
    with pytest.raises(ValidationFailed):
        tokens.mint_user_token(SECRET, user_id="u1", ttl_s=600.0, now=NOW)  # type: ignore[arg-type]


def test_user_id_is_checked() -> None:
    with pytest.raises(ValidationFailed):
        tokens.mint_user_token(SECRET, user_id="no spaces", ttl_s=600, now=NOW)


def test_other_algorithms_are_refused() -> None:
    token = jwt.encode({"sub": "u1", "exp": 4_000_000_000}, SECRET, algorithm="HS512")
    with pytest.raises(Unauthenticated):
        tokens.user_of_token(SECRET, token)


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        tokens.check_secret("short")
